"""The inputs of the batched preflight runs (conftest.py: bad_inputs, good_inputs): one inventory host
per case, each with its own variables over the good ones. A bad case names the regex its host's
failure message must match; the tests that read each batch live beside the code they check
(test_preflight.py, test_cloudsql_proxy.py, test_firewall_ruleset.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

SA_KEY = {
    "type": "service_account",
    "client_email": "mlflow@example-project.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
}

# MLflow's metrics on, with everything they need (the metrics-* cases break one input each).
METRICS_ON = {"tracking_server_metrics": True, "tls_proxy_metrics_password": "metrics-Pa55word-2024",
              "tls_proxy_metrics_cidrs": ["10.20.0.5/32", "fd00::/8"]}

# Single sign-on with everything it needs but a provider: nothing listens on the issuer's loopback port (the
# oidc-* cases break one input each; the host_checks batch keeps them all, and the host's discovery check fails).
OIDC_ON = {"tracking_server_auth": "oidc", "tracking_server_oidc_issuer": "https://127.0.0.1:9/realms/mlflow",
           "tracking_server_oidc_client_id": "mlflow", "tracking_server_oidc_client_secret": "client-Secret-2024"}

# Core inputs of every role: (host, overrides, message).
CORE_CASES = [
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
    ("http-server-name", {"tracking_server_http_server": "hypercorn"},
     r"tracking_server_http_server must be uvicorn, gunicorn or split, not 'hypercorn'"),
    ("split-without-nginx", {"tracking_server_http_server": "split", "tls_proxy_enabled": False},
     r"tracking_server_http_server is split but tls_proxy_enabled is false"),
    ("pool-below-threads", {"tracking_server_gunicorn_threads": 8, "tracking_server_db_pool_size": 2,
                            "tracking_server_db_max_overflow": 3},
     r"tracking_server_db_pool_size \(2\) \+ tracking_server_db_max_overflow \(3\) must exceed\s+"
     r"tracking_server_gunicorn_threads \(8\)"),
    ("api-port-clash", {"tracking_server_api_port": 5000},
     r"tracking_server_api_port must be between 1 and 65535 and differ from tracking_server_port \(5000\)"),
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
    ("user-grant-without-permission", {"tracking_server_auth_users": [
        {"name": "bob", "password": "bob-Pa55word-2024", "permissions": [{"experiment": "churn"}]}]},
     r"tracking_server_auth_users entry 'bob' is not valid"),
    ("user-grant-bad-state", {"tracking_server_auth_users": [
        {"name": "bob", "password": "bob-Pa55word-2024", "permissions": [{"experiment": "churn", "state": "gone"}]}]},
     r"tracking_server_auth_users entry 'bob' is not valid"),
    ("db-pool-negative", {"tracking_server_db_pool_size": -1},
     r"tracking_server_db_pool_size \(-1\) and tracking_server_db_max_overflow \(3\) must be 0"),
    ("negative-cache-ttl", {"tracking_server_auth_cache_ttl": -5},
     r"tracking_server_auth_cache_ttl must be 0 or more, not -5"),
    ("cloudsql-backup-instance", {"tracking_server_cloudsql_backup_instance": "my-project/mlflow-db"},
     r"tracking_server_cloudsql_backup_instance must be the Cloud SQL instance to back up before an upgrade as "
     r"PROJECT:REGION:INSTANCE, .* not 'my-project/mlflow-db'"),
    ("archival-retention", {"tracking_server_trace_archival_location": "gs://mlflow-test-bucket/trace-archive",
                            "tracking_server_trace_archival_retention": "30 days"},
     r"tracking_server_trace_archival_retention a duration such as 30d, 12h or 90m \(not '30 days'\)"),
    ("archival-relative", {"tracking_server_trace_archival_location": "trace-archive"},
     r"tracking_server_trace_archival_location must be gs://BUCKET\[/PREFIX\], s3://BUCKET\[/PREFIX\] or an absolute"),
    ("archival-interval", {"tracking_server_trace_archival_location": "/var/lib/mlflow/trace-archive",
                           "tracking_server_trace_archival_interval": 30},
     r"tracking_server_trace_archival_interval 60 to 86400 seconds \(not 30\)"),
    # MLflow's metrics: behind nginx only, with credentials, to listed ranges that are not the world.
    ("metrics-without-nginx", {"tracking_server_metrics": True, "tls_proxy_enabled": False},
     r"tracking_server_metrics is true but tls_proxy_enabled is false"),
    ("metrics-no-password", {**METRICS_ON, "tls_proxy_metrics_password": ""},
     r"tls_proxy_metrics_password must hold at least 12 characters"),
    ("metrics-no-ranges", {**METRICS_ON, "tls_proxy_metrics_cidrs": []},
     r"tracking_server_metrics is true but tls_proxy_metrics_cidrs is empty"),
    ("metrics-world", {**METRICS_ON, "tls_proxy_metrics_cidrs": ["10.0.0.0/8", "::/0"]},
     r"tls_proxy_metrics_cidrs admits 0.0.0.0/0 or ::/0"),
    ("metrics-bad-range", {**METRICS_ON, "tls_proxy_metrics_cidrs": ["10.0.0.300/32"]},
     r"tls_proxy_metrics_cidrs has entries that are not CIDR ranges: \['10.0.0.300/32'\]"),
    ("metrics-port-clash", {**METRICS_ON, "tls_proxy_metrics_port": 443},
     r"tls_proxy_metrics_port must be between 1 and 65535 and differ from the HTTPS, HTTP and MLflow ports, not 443"),
    ("oidc-http-issuer", {**OIDC_ON, "tracking_server_oidc_issuer": "http://idp.example.com/realms/mlflow"},
     r"tracking_server_oidc_issuer must be the provider's https:// issuer URL"),
    ("oidc-no-secret", {**OIDC_ON, "tracking_server_oidc_client_secret": ""},
     r"tracking_server_oidc_client_secret is missing"),
    ("oidc-redirect-elsewhere", {**OIDC_ON, "tracking_server_oidc_redirect_url": "https://other.example.com/callback"},
     r"tracking_server_oidc_redirect_url is 'https://other.example.com/callback' but the server's login returns to "
     r"https://\S+/callback"),
    ("oidc-plain-http", {**OIDC_ON, "tls_proxy_enabled": False},
     r"Single sign-on needs the public URL on https .* not 'http://"),
    ("oidc-split", {**OIDC_ON, "tracking_server_http_server": "split"},
     r"tracking_server_http_server is split but tracking_server_auth is oidc: the single sign-on plugin is an ASGI"),
    ("oidc-with-iap", {**OIDC_ON, "iap_enabled": True, "iap_audience": "/projects/1/global/backendServices/2"},
     r"tracking_server_auth oidc and iap_enabled are two logins for one server"),
    ("cloudsql-backup-sqlite", {"tracking_server_backend": "sqlite",
                                "tracking_server_cloudsql_backup_instance": "my-project:europe-west1:mlflow-db"},
     r"tracking_server_cloudsql_backup_instance is set but tracking_server_backend is sqlite"),
]

# Service-account key files: (host suffix, the file's content, message); the fixture writes the files.
KEY_CASES = [
    ("not-json", "{not json", r"is not valid JSON"),
    ("wrong-type", {**SA_KEY, "type": "authorized_user"}, r"has type 'authorized_user', expected 'service_account'"),
    ("no-private-key", {k: v for k, v in SA_KEY.items() if k != "private_key"}, r"lacks the field 'private_key'"),
    ("not-pem", {**SA_KEY, "private_key": "hunter2"}, r"has a private_key that is not a PEM key"),
]

# The Cloud SQL Auth Proxy's inputs.
STANDIN = Path(__file__).resolve().parents[2] / "molecule" / "resources" / "cloud_sql_proxy_standin.py"
STANDIN_SHA256 = hashlib.sha256(STANDIN.read_bytes()).hexdigest()
URL = "https://storage.googleapis.com/cloud-sql-connectors/cloud-sql-proxy/v2.14.0/cloud-sql-proxy.linux.amd64"
ENABLED = {
    "cloudsql_proxy_enabled": True,
    "cloudsql_proxy_instance_connection_name": "my-project:europe-west1:mlflow-db",
}

PROXY_CASES = [
    (
        "proxy-no-instance",
        {"cloudsql_proxy_enabled": True, "cloudsql_proxy_binary_src": str(STANDIN)},
        r"cloudsql_proxy_enabled is true, so cloudsql_proxy_instance_connection_name must be the instance "
        r"connection name PROJECT:REGION:INSTANCE .* not ''",
    ),
    (
        "proxy-bad-instance",
        {
            **ENABLED,
            "cloudsql_proxy_instance_connection_name": "my-project/mlflow-db",
            "cloudsql_proxy_binary_src": str(STANDIN),
        },
        r"cloudsql_proxy_instance_connection_name must be .* not 'my-project/mlflow-db'",
    ),
    (
        "proxy-instance-two-parts",
        {
            **ENABLED,
            "cloudsql_proxy_instance_connection_name": "my-project:mlflow-db",
            "cloudsql_proxy_binary_src": str(STANDIN),
        },
        r"cloudsql_proxy_instance_connection_name must be",
    ),
    (
        "proxy-no-source",
        ENABLED,
        r"Set exactly one of cloudsql_proxy_binary_src .* and cloudsql_proxy_download_url .* got neither",
    ),
    (
        "proxy-both-sources",
        {
            **ENABLED,
            "cloudsql_proxy_binary_src": str(STANDIN),
            "cloudsql_proxy_download_url": URL,
            "cloudsql_proxy_sha256": "a" * 64,
        },
        r"Set exactly one of cloudsql_proxy_binary_src .* got both",
    ),
    (
        "proxy-url-without-sha256",
        {**ENABLED, "cloudsql_proxy_download_url": URL},
        r"cloudsql_proxy_download_url needs cloudsql_proxy_sha256",
    ),
    (
        "proxy-bad-sha256",
        {**ENABLED, "cloudsql_proxy_download_url": URL, "cloudsql_proxy_sha256": "abc123"},
        r"cloudsql_proxy_sha256 must be 64 hex digits, not 'abc123'",
    ),
    (
        "proxy-bad-url",
        {**ENABLED, "cloudsql_proxy_download_url": "storage.googleapis.com/proxy", "cloudsql_proxy_sha256": "a" * 64},
        r"cloudsql_proxy_download_url must be an https, http or file URL",
    ),
    (
        "proxy-src-missing",
        {**ENABLED, "cloudsql_proxy_binary_src": "/nonexistent/cloud-sql-proxy"},
        r"cloudsql_proxy_binary_src points at /nonexistent/cloud-sql-proxy, which is not a file on the controller",
    ),
    (
        "proxy-src-sha256-mismatch",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_sha256": "b" * 64},
        rf"cloudsql_proxy_binary_src \(.*\) has the SHA-256 {STANDIN_SHA256}, not cloudsql_proxy_sha256 b{{64}}",
    ),
    (
        "proxy-sigterm-delay",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_max_sigterm_delay": "10"},
        r"cloudsql_proxy_max_sigterm_delay must be a number of seconds or minutes",
    ),
    (
        "proxy-same-ports",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_http_port": 5432},
        r"cloudsql_proxy_port \(5432\) and cloudsql_proxy_http_port \(5432\) must be different",
    ),
    (
        "proxy-relative-socket-dir",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_unix_socket_dir": "cloudsql"},
        r"cloudsql_proxy_unix_socket_dir must be an absolute directory",
    ),
]

# The firewall's zero-prefix check: (host, variable, ranges, refusal).
FIREWALL_CASES = [
    ("fw-world-https", "firewall_https_cidrs", ["10.0.0.0/8", "0.0.0.0/0"], "admits 0.0.0.0/0"),
    ("fw-world-ssh-v6", "firewall_ssh_cidrs", ["10.0.0.0/8", "::/0"], "admits 0.0.0.0/0"),
    ("fw-world-double-zero", "firewall_ssh_cidrs", ["0.0.0.0/00"], "admits 0.0.0.0/0"),
    # A zero prefix with host bits does not even parse as a range.
    ("fw-host-bits", "firewall_https_cidrs", ["192.168.1.1/0"], "has entries that are not CIDR ranges"),
]

# Hosts whose inputs are good, some of them inputs other cases refuse but these allow: {host: overrides}.
GOOD = {
    "good": {},
    "world-forced": {"firewall_https_cidrs": ["0.0.0.0/0"], "firewall_allow_world": True},
    # A connection name (domain-scoped project too) passes the format check a case above fails.
    "backup-instance": {
        "tracking_server_cloudsql_backup_instance": "example.com:my-project:europe-west1:mlflow-db"},
    "proxy-src-with-matching-sha256":
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_sha256": STANDIN_SHA256.upper()},
    "proxy-url-unix-socket": {
        **ENABLED,
        "cloudsql_proxy_download_url": URL,
        "cloudsql_proxy_sha256": STANDIN_SHA256,
        "cloudsql_proxy_unix_socket_dir": "/cloudsql",
    },
    # Disabled: nothing is checked, not even the missing instance and binary.
    "proxy-disabled": {"cloudsql_proxy_enabled": False, "cloudsql_proxy_download_url": URL},
    "archival": {"tracking_server_trace_archival_location": "gs://mlflow-test-bucket/trace-archive",
                 "tracking_server_trace_archival_retention": "12h", "tracking_server_trace_archival_interval": 600},
    "fw-narrow": {"firewall_https_cidrs": ["10.0.0.0/8", "10.1.0.0/16"], "firewall_ssh_cidrs": ["fd00::/8"]},
    # Without nginx the default HTTP server is uvicorn, not split (which the case above refuses when asked for).
    "nginx-off-default-server": {"tls_proxy_enabled": False},
    "metrics-on": METRICS_ON,
    "gunicorn-without-nginx": {"tls_proxy_enabled": False, "tracking_server_http_server": "gunicorn"},
    "split-asked": {"tracking_server_http_server": "split", "tracking_server_api_port": 5100,
                    "tracking_server_api_workers": 3},
}
