"""The environment filters (plugins/filter/environment.py): the tracking server's and its timers' environment
from the role's settings, and values written safely into systemd's files."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "environment", Path(__file__).resolve().parents[4] / "plugins" / "filter" / "environment.py"
)
environment = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(environment)

BASE = {
    "uri_variable": "MLFLOW_BACKEND_STORE_URI", "backend_uri": "postgresql+psycopg2://m:pw@db/mlflow",
    "disable_telemetry": "True", "enable_job_execution": True, "job_periodic_tasks": "False", "job_engine": "huey",
    "db_pool_recycle": "1800", "db_pool_size": "0", "db_max_overflow": 0, "gcs_upload_chunk_mib": "0",
    "artifact_root": "gs://bucket/p", "gcs_key_file": "", "model_source_regex": "^runs:/", "read_replica_uri": "",
    "gateway": "False", "kek_passphrase": "", "kek_version": "", "trace_archival_config": "", "s3": {},
    "security_in_environment": "False", "allowed_hosts": ["a", "b"], "cors_allowed_origins": ["https://a"],
    "auth_config": "", "secret_key": "", "pythonpath": "/opt/mlflow/libexec", "jobs_username": "",
    "jobs_password": "", "iap": False, "proxy_token": "", "extra_env": {}, "artifact_streaming": False,
}


def test_the_minimal_environment():
    assert environment.mlflow_environment(BASE) == {
        "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://m:pw@db/mlflow",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true",
        "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
        "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE": "1800",
        "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX": "^runs:/",
    }


def test_every_optional_setting_becomes_its_variable():
    env = environment.mlflow_environment({
        **BASE, "job_engine": "executor", "job_periodic_tasks": True, "db_pool_size": 7, "db_max_overflow": "3",
        "gcs_upload_chunk_mib": 16, "gcs_key_file": "/etc/mlflow/gcs.json", "read_replica_uri": "postgresql://r",
        "gateway": True, "kek_passphrase": "k" * 40, "kek_version": 2, "trace_archival_config": "/etc/mlflow/t.yaml",
        "security_in_environment": True, "auth_config": "/etc/mlflow/basic_auth.ini", "secret_key": "s",
        "jobs_username": "mlflow-ansible-jobs", "jobs_password": "j", "iap": True, "proxy_token": "t",
        "s3": {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": ""},
    })
    assert env["MLFLOW_SERVER_JOB_EXECUTION_ENGINE"] == "executor"
    assert env["MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS"] == "true"
    assert (env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"], env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]) == ("7", "3")
    assert env["MLFLOW_GCS_UPLOAD_CHUNK_SIZE"] == str(16 * 1048576)
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/etc/mlflow/gcs.json"
    assert env["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"] == "postgresql://r"
    assert (env["MLFLOW_CRYPTO_KEK_PASSPHRASE"], env["MLFLOW_CRYPTO_KEK_VERSION"]) == ("k" * 40, "2")
    assert env["MLFLOW_TRACE_ARCHIVAL_CONFIG"] == "/etc/mlflow/t.yaml"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1" and "AWS_ACCESS_KEY_ID" not in env
    assert (env["MLFLOW_SERVER_ALLOWED_HOSTS"], env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"]) == ("a,b", "https://a")
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini" and env["PYTHONPATH"] == "/opt/mlflow/libexec"
    assert env["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_ANSIBLE_JOBS_USERNAME"] == "mlflow-ansible-jobs"
    assert env["MLFLOW_ANSIBLE_PROXY_TOKEN"] == "t"


def test_what_does_not_apply_stays_out():
    env = environment.mlflow_environment({
        **BASE, "enable_job_execution": "False", "job_engine": "executor", "job_periodic_tasks": True,
        "gcs_upload_chunk_mib": 16, "artifact_root": "s3://bucket/p", "kek_passphrase": "k", "proxy_token": "t",
    })
    assert env["MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS"] == "false"  # periodic tasks need the job runner
    for name in ("MLFLOW_SERVER_JOB_EXECUTION_ENGINE", "MLFLOW_GCS_UPLOAD_CHUNK_SIZE", "MLFLOW_CRYPTO_KEK_PASSPHRASE",
                 "MLFLOW_ANSIBLE_PROXY_TOKEN", "MLFLOW_AUTH_CONFIG_PATH", "PYTHONPATH", "MLFLOW_SERVER_ALLOWED_HOSTS"):
        assert name not in env, name


def test_artifact_streaming_puts_the_helpers_on_the_path_without_auth():
    env = environment.mlflow_environment({**BASE, "artifact_streaming": True})
    assert env["PYTHONPATH"] == "/opt/mlflow/libexec" and "MLFLOW_AUTH_CONFIG_PATH" not in env
    assert "PYTHONPATH" not in environment.mlflow_environment({**BASE, "artifact_streaming": "False"})


def test_extra_env_comes_last_and_an_artifacts_only_server_names_its_uri_otherwise():
    env = environment.mlflow_environment({**BASE, "uri_variable": "MLFLOW_ANSIBLE_BACKEND_URI",
                                          "extra_env": {"MLFLOW_DISABLE_TELEMETRY": "false", "X": "1"}})
    assert "MLFLOW_BACKEND_STORE_URI" not in env and env["MLFLOW_ANSIBLE_BACKEND_URI"].startswith("postgresql")
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "false" and env["X"] == "1"


def test_the_timers_see_no_secret_of_the_server():
    env = environment.mlflow_environment({
        **BASE, "gateway": True, "kek_passphrase": "k", "kek_version": 1, "auth_config": "/a", "secret_key": "s",
        "jobs_username": "j", "jobs_password": "p", "iap": True, "proxy_token": "t", "read_replica_uri": "postgresql://r",
        "metrics_token": "m",
        "s3": {"AWS_SECRET_ACCESS_KEY": "needed-by-gc"},
    })
    assert env["MLFLOW_ANSIBLE_METRICS_TOKEN"] == "m"
    timers = environment.timers_environment(env, "postgresql+psycopg2://m:pw@db/mlflow", "gs://bucket/p")
    assert set(environment._SERVER_ONLY) & set(timers) == set()
    assert timers["MLFLOW_TRACKING_URI"] == "postgresql+psycopg2://m:pw@db/mlflow"
    assert timers["MLFLOW_ARTIFACTS_DESTINATION"] == "gs://bucket/p"
    assert timers["AWS_SECRET_ACCESS_KEY"] == "needed-by-gc"
    assert "MLFLOW_ARTIFACTS_DESTINATION" not in environment.timers_environment(env, "sqlite:////x.db")


@pytest.mark.parametrize("value", ['plain', 'p@ss"w\\rd$%', "a b 'c'", ""])
def test_an_environment_file_value_reads_back_unchanged(value):
    # systemd reads EnvironmentFile values with shell-like double-quote rules for \\ and \"
    line = environment.env_file_value(value)
    assert shlex.split(line, posix=True) == [value] or (value == "" and line == '""')


def test_an_environment_file_value_refuses_a_line_break():
    with pytest.raises(ValueError, match="line break"):
        environment.env_file_value("a\nb")


def test_an_exec_argument_escapes_specifiers_and_variables():
    assert environment.systemd_exec_arg("s3://bucket/100%/$HOME") == "s3://bucket/100%%/$$HOME"
    assert environment.systemd_exec_arg("gs://bucket/prefix") == "gs://bucket/prefix"
    with pytest.raises(ValueError, match="spaces, quotes or backslashes"):
        environment.systemd_exec_arg("a b")


def test_the_role_default_pools_reach_mlflow_and_zero_leaves_sqlalchemys():
    """The role's defaults (any pool, counted by the connections filters) become MLflow's variables; 0 sets
    nothing, so MLflow keeps SQLAlchemy's 5 + 10 (it would ignore a MAX_OVERFLOW of 0 anyway)."""
    env = environment.mlflow_environment({**BASE, "db_pool_size": "3", "db_max_overflow": 1})
    assert (env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"], env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]) == ("3", "1")
    unset = environment.mlflow_environment({**BASE, "db_pool_size": 0, "db_max_overflow": "0"})
    assert "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE" not in unset and "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW" not in unset


OIDC = {"OIDC_DISCOVERY_URL": "https://idp/.well-known/openid-configuration", "OIDC_CLIENT_ID": "mlflow",
        "OIDC_CLIENT_SECRET": "client-secret", "OIDC_USERS_DB_URI": "postgresql+psycopg2://m:pw@db/mlflow_oidc",
        "SECRET_KEY": "session-key", "OIDC_AUDIENCE": "", "OIDC_DB_POOL_SIZE": 0}


def test_single_sign_on_settings_become_the_plugins_variables_and_stay_out_of_the_timers():
    env = environment.mlflow_environment({**BASE, "oidc": OIDC})
    assert env["OIDC_CLIENT_SECRET"] == "client-secret" and env["SECRET_KEY"] == "session-key"
    assert env["OIDC_DB_POOL_SIZE"] == "0"
    # The plugin takes a variable that is set but empty as set: an empty setting is left out.
    assert "OIDC_AUDIENCE" not in env
    timers = environment.timers_environment(env, "postgresql+psycopg2://m:pw@db/mlflow")
    assert not [key for key in timers if key.startswith("OIDC_") or key == "SECRET_KEY"]
    # Without the mode, none of it.
    assert not [key for key in environment.mlflow_environment(BASE) if key.startswith("OIDC_")]
