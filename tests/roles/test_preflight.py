"""Bad input is rejected by the preflight play with a message naming the variable,
before the deploy play starts (nothing on the host changes)."""

from __future__ import annotations

import json
import re
import socket

import pytest

SA_KEY = {
    "type": "service_account",
    "client_email": "mlflow@example-project.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
}


def _key_file(tmp_path, content) -> str:
    path = tmp_path / "key.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


CASES = [
    ("uri-scheme", {"tracking_server_backend_store_uri": "mssql://u:p@db/mlflow"},
     r"tracking_server_backend_store_uri is not usable: the scheme is 'mssql'"),
    ("uri-sqlite-relative", {"tracking_server_backend_store_uri": "sqlite:///mlflow.db"},
     r"a SQLite URI must name an absolute file path"),
    ("uri-no-password", {"tracking_server_backend_store_uri": "postgresql://mlflow@db:5432/mlflow"},
     r"tracking_server_backend_store_uri is not usable: the URI carries no password"),
    ("uri-garbage", {"tracking_server_backend_store_uri": "not a uri"},
     r"tracking_server_backend_store_uri is not usable"),
    ("replica-no-password", {"tracking_server_read_replica_backend_store_uri": "postgresql://reader@10.20.0.4/mlflow"},
     r"tracking_server_read_replica_backend_store_uri is not usable: the URI carries no password"),
    ("replica-other-engine",
     {"tracking_server_read_replica_backend_store_uri": "mysql://reader:pw@10.20.0.4/mlflow"},
     r"its scheme mysql\+pymysql differs from the backend's postgresql\+psycopg2"),
    # The backend's own URI as the replica (a fixed port for it, so no connection check).
    ("replica-is-primary",
     {"cloudsql_client_port": 5432, "cloudsql_client_check": False,
      "tracking_server_read_replica_backend_store_uri":
          "postgresql://mlflow:preflight-test-password@127.0.0.1:5432/mlflow?sslmode=prefer"},
     r"it is the backend store URI itself"),
    ("replica-sqlite", {"tracking_server_backend": "sqlite",
                        "tracking_server_read_replica_backend_store_uri": "postgresql://r:pw@10.20.0.4/mlflow"},
     r"a SQLite backend has no replica"),
    ("empty-password", {"cloudsql_client_password": ""}, r"cloudsql_client_password is empty"),
    ("host-with-scheme", {"cloudsql_client_host": "postgres://10.0.0.3"},
     r"cloudsql_client_host must be the IP or DNS name"),
    ("db-port", {"cloudsql_client_port": 70000}, r"cloudsql_client_port must be between 1 and 65535"),
    ("db-engine", {"cloudsql_client_engine": "oracle"}, r"cloudsql_client_engine"),
    ("no-host-no-socket", {"cloudsql_client_host": ""}, r"or cloudsql_client_unix_socket the path of its unix socket"),
    ("relative-socket", {"cloudsql_client_unix_socket": "cloudsql/p:r:i"},
     r"cloudsql_client_unix_socket must be an absolute path"),
    ("backend-choice", {"tracking_server_backend": "duckdb"}, r"tracking_server_backend"),
    ("local-pg-with-mysql", {"tracking_server_backend": "local_postgresql", "cloudsql_client_host": "",
                             "cloudsql_client_engine": "mysql"},
     r"local_postgresql runs PostgreSQL on this VM: it needs cloudsql_client_engine: postgresql"),
    ("local-pg-remote-host", {"tracking_server_backend": "local_postgresql", "cloudsql_client_host": "10.0.0.9"},
     r"cloudsql_client_host 127.0.0.1 \(not '10.0.0.9'\)"),
    ("proxy-with-sqlite", {"tracking_server_backend": "sqlite", "cloudsql_proxy_enabled": True,
                           "cloudsql_proxy_instance_connection_name": "p:r:i",
                           "cloudsql_proxy_binary_src": "/etc/hostname"},
     r"cloudsql_proxy_enabled is true but tracking_server_backend is sqlite"),
    ("direct-gcs-non-bucket", {"tracking_server_serve_artifacts": False,
                               "tracking_server_default_artifact_root": "/var/lib/mlflow/artifacts"},
     r"tracking_server_default_artifact_root themselves: it must be gs://BUCKET\[/PREFIX\] \(GCS\) or s3://"),
    ("direct-without-root", {"tracking_server_serve_artifacts": False},
     r"so clients write to tracking_server_default_artifact_root themselves"),
    ("artifacts-only-no-destination", {"tracking_server_mode": "artifacts_only",
                                       "tracking_server_artifacts_destination": ""},
     r"tracking_server_artifacts_destination must be .* \(tracking_server_mode is artifacts_only\)"),
    ("artifacts-server-url", {"tracking_server_artifacts_server_url": "artifacts.internal:5000"},
     r"tracking_server_artifacts_server_url must be the base URL of an artifacts-only server"),
    ("artifacts-server-and-root", {"tracking_server_artifacts_server_url": "http://artifacts:5000",
                                   "tracking_server_default_artifact_root": "gs://b/x"},
     r"cannot be combined with tracking_server_default_artifact_root"),
    ("s3-half-keys", {"tracking_server_artifacts_destination": "s3://bucket/mlflow",
                      "tracking_server_s3_access_key_id": "AKIAEXAMPLE"},
     r"Set both tracking_server_s3_access_key_id and tracking_server_s3_secret_access_key, or neither"),
    ("sslmode", {"cloudsql_client_sslmode": "always"}, r"cloudsql_client_sslmode"),
    ("artifacts-relative", {"tracking_server_artifacts_destination": "artifacts"},
     r"tracking_server_artifacts_destination must be gs://BUCKET\[/PREFIX\], s3://BUCKET\[/PREFIX\]"),
    ("artifacts-uppercase", {"tracking_server_artifacts_destination": "gs://My_Bucket"},
     r"tracking_server_artifacts_destination must be gs://"),
    ("port-range", {"tracking_server_port": 70000}, r"tracking_server_port must be between 1 and 65535, not 70000"),
    ("workers-type", {"tracking_server_workers": "many"}, r"tracking_server_workers"),
    ("old-mlflow", {"mlflow_version": "3.16.1"}, r"mlflow_version 3.16.1 is below 3.17.0"),
    ("bad-version", {"mlflow_version": "latest"}, r"mlflow_version must be a release number"),
    ("timeouts", {"tracking_server_graceful_shutdown_timeout": 40},
     r"tracking_server_graceful_shutdown_timeout \(40\) must be below\s+tracking_server_timeout_stop_sec \(30\)"),
    ("wildcard-host", {"tracking_server_allowed_hosts": ["*"]},
     r"tracking_server_allowed_hosts must list single names"),
    ("root-user", {"python_service_user": "root"},
     r"python_service_user and python_service_group must name an unprivileged"),
    ("installer", {"mlflow_installer": "conda"}, r"mlflow_installer"),
    ("short-admin-password", {"tracking_server_admin_password": "short-pass"},
     r"tracking_server_admin_password must have at least 12 characters \(it has 10\)"),
    ("short-kek-passphrase", {"tracking_server_kek_passphrase": "k" * 31},
     r"tracking_server_kek_passphrase must have at least 32 characters \(it has 31\)"),
    ("public-kek-passphrase", {"tracking_server_kek_passphrase": "mlflow-default-kek-passphrase-for-development-only"},
     r"must not be MLflow's public development passphrase"),
    ("cert-without-key", {"tls_proxy_cert_file": "/etc/hostname"},
     r"tls_proxy_cert_file and tls_proxy_key_file go together"),
    ("bad-cidr", {"firewall_https_cidrs": ["10.0.0.0/8", "10.300.0.0/16"]},
     r"firewall_https_cidrs has entries that are not CIDR ranges: \['10.300.0.0/16'\]"),
    ("world-open", {"firewall_https_cidrs": ["0.0.0.0/0"]}, r"firewall_https_cidrs admits 0.0.0.0/0"),
    ("iap-no-audience", {"iap_enabled": True}, r"iap_enabled is true, so iap_audience must be"),
    ("iap-bad-audience", {"iap_enabled": True, "iap_audience": "my-backend"}, r"iap_audience must be /projects/"),
    ("old-tls", {"tls_proxy_protocols": ["TLSv1", "TLSv1.2"]},
     r"tls_proxy_protocols may list TLSv1.2 and TLSv1.3 only"),
    ("user-short-password", {"tracking_server_auth_users": [{"name": "bob", "password": "short"}]},
     r"tracking_server_auth_users entry 'bob' is not valid"),
    ("negative-cache-ttl", {"tracking_server_auth_cache_ttl": -5},
     r"tracking_server_auth_cache_ttl must be 0 or more, not -5"),
    ("cloudsql-backup-instance", {"tracking_server_cloudsql_backup_instance": "my-project/mlflow-db"},
     r"tracking_server_cloudsql_backup_instance must be the Cloud SQL instance to back up before an upgrade as "
     r"PROJECT:REGION:INSTANCE, .* not 'my-project/mlflow-db'"),
    ("cloudsql-backup-sqlite", {"tracking_server_backend": "sqlite",
                                "tracking_server_cloudsql_backup_instance": "my-project:europe-west1:mlflow-db"},
     r"tracking_server_cloudsql_backup_instance is set but tracking_server_backend is sqlite"),
]


@pytest.mark.parametrize(("overrides", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_before_any_change(run_site, overrides, message):
    result = run_site(overrides)
    assert result.rc != 0
    flat = re.sub(r"\s+", " ", result.output)
    assert re.search(message, flat) or re.search(message, result.output), result.output[-3000:]
    assert not result.deploy_started


def test_missing_required_artifact_destination(run_site):
    result = run_site(drop=("tracking_server_artifacts_destination",))
    assert result.rc != 0
    assert "tracking_server_artifacts_destination" in result.output
    assert not result.deploy_started


def test_unsupported_os(run_site):
    result = run_site(supported_os={"Debian": ["99"]})
    assert result.rc != 0
    assert "Unsupported operating system" in result.output
    assert not result.deploy_started


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"is not valid JSON"),
        ({**SA_KEY, "type": "authorized_user"}, r"has type 'authorized_user', expected 'service_account'"),
        ({k: v for k, v in SA_KEY.items() if k != "private_key"}, r"lacks the field 'private_key'"),
        ({**SA_KEY, "private_key": "hunter2"}, r"has a private_key that is not a PEM key"),
    ],
    ids=["not-json", "wrong-type", "no-private-key", "not-pem"],
)
def test_invalid_key_file(run_site, tmp_path, content, message):
    result = run_site({"gcs_credentials_mode": "key_file", "gcs_credentials_key_file": _key_file(tmp_path, content)})
    assert result.rc != 0
    assert "gcs_credentials_key_file is not usable" in result.output
    assert re.search(message, result.output), result.output[-3000:]
    assert "hunter2" not in result.output
    assert not result.deploy_started


def test_missing_key_file(run_site, tmp_path):
    result = run_site({"gcs_credentials_mode": "key_file", "gcs_credentials_key_file": str(tmp_path / "nope.json")})
    assert result.rc != 0
    assert re.search(r"gcs_credentials_key_file is not usable: .*nope.json does not exist", result.output)
    assert not result.deploy_started


def test_world_allowed_when_forced(run_site):
    result = run_site({"firewall_https_cidrs": ["0.0.0.0/0"], "firewall_allow_world": True})
    assert result.deploy_started, result.output[-3000:]


def test_cloudsql_backup_instance_passes_preflight(run_site):
    """A connection name (domain-scoped project too) passes the format check the cases above fail."""
    result = run_site({"tracking_server_cloudsql_backup_instance": "example.com:my-project:europe-west1:mlflow-db"})
    assert result.deploy_started, result.output[-3000:]


def test_good_input_passes_preflight(run_site):
    """The control case: with valid inputs the preflight passes and the deploy play starts (check mode)."""
    result = run_site()
    assert result.deploy_started, result.output[-3000:]


ROLES = ("python", "mlflow", "local_postgresql", "cloudsql_proxy", "cloudsql_client", "gcs_credentials", "iap",
         "tracking_server", "tls_proxy", "firewall")


def test_the_deploy_play_does_not_run_the_preflight_again(run_site):
    """The preflight play checked every role; each role's own preflight include is skipped in the deploy play."""
    result = run_site()
    assert result.deploy_started, result.output[-3000:]
    for role in ROLES:
        # The role's Preflight task header, then its "skipping" line before the next task's header.
        header = rf"TASK \[mlflow_ansible\.tracking\.{role} : Preflight\][^\n]*\n"
        assert re.search(header + r"(?:(?!TASK \[)[^\n]*\n)*?skipping: \[controller\]", result.output), role
    # A task of one role's preflight ran once, in the preflight play.
    assert result.output.count("TASK [mlflow_ansible.tracking.python : Assert the service account is not root]") == 1


def test_a_role_used_on_its_own_runs_its_preflight(run_site, tmp_path):
    """Without the site playbook's preflight play, the role checks its own inputs."""
    playbook = tmp_path / "python-only.yml"
    playbook.write_text(json.dumps([{"name": "The python role alone", "hosts": "mlflow_servers",
                                     "gather_facts": True, "roles": ["mlflow_ansible.tracking.python"]}]))
    result = run_site({"python_service_user": "root"}, playbook=playbook)
    assert result.rc != 0
    assert "python_service_user and python_service_group must name an unprivileged" in result.output, \
        result.output[-3000:]


def test_an_unreachable_database_stops_the_preflight(run_site):
    """The connection check is real: a loopback port where nothing listens fails it, before any change."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run_site({"cloudsql_client_port": closed_port, "cloudsql_client_connect_timeout": 1})
    assert result.rc != 0
    flat = re.sub(r"\s+", " ", result.output)
    assert f"nothing answered on host 127.0.0.1 port {closed_port}" in flat, result.output[-3000:]
    assert not result.deploy_started


def test_one_server_per_database_runs_the_periodic_jobs(run_site):
    """MLflow's periodic jobs have no lock across servers: two servers of one database may not both run them."""
    both = run_site(hosts={"vm1": {}, "vm2": {}})
    assert both.rc != 0, both.output
    assert "vm1, vm2 share one database" in both.output
    assert "set tracking_server_job_periodic_tasks: false" in both.output
    assert not both.deploy_started
    one = run_site(hosts={"vm1": {}, "vm2": {"tracking_server_job_periodic_tasks": False}})
    assert one.rc == 0, one.output[-3000:]
