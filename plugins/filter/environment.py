"""Filters that build the tracking server's environment (the root-only EnvironmentFile of its unit and of its
timers) from one dictionary of settings, and write values into systemd's files safely.

``mlflow_environment`` is where the rules live: which MLflow variable a setting becomes, and when. The role's
vars file only lists the settings (``_tracking_server_env_settings``), one line each.
"""

from __future__ import annotations

DOCUMENTATION = ""

# What the timers (mlflow gc, trace archival) must not see: the server's own identity, secrets and replica.
_SERVER_ONLY = (
    "MLFLOW_BACKEND_STORE_URI", "MLFLOW_READ_REPLICA_BACKEND_STORE_URI", "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_ANSIBLE_PROXY_TOKEN", "MLFLOW_CRYPTO_KEK_PASSPHRASE",
    "MLFLOW_CRYPTO_KEK_VERSION", "MLFLOW_ANSIBLE_JOBS_USERNAME", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_ANSIBLE_METRICS_TOKEN",
    # tracking_server_auth: oidc (the mlflow-oidc-auth plugin's settings).
    "OIDC_CLIENT_SECRET", "OIDC_USERS_DB_URI", "SECRET_KEY", "OIDC_DISCOVERY_URL", "OIDC_ISSUER", "OIDC_CLIENT_ID",
    "OIDC_REDIRECT_URI", "OIDC_SCOPE", "OIDC_GROUPS_ATTRIBUTE", "OIDC_GROUP_NAME", "OIDC_ADMIN_GROUP_NAME",
    "OIDC_AUDIENCE", "OIDC_DB_POOL_SIZE", "OIDC_DB_POOL_MAX_OVERFLOW", "OIDC_DB_POOL_RECYCLE_SECONDS",
    "OIDC_PROVISION_ON_BEARER_AUTH", "OIDC_TRUST_BEARER_GROUP_CLAIMS", "DEFAULT_MLFLOW_PERMISSION",
    "SESSION_COOKIE_SECURE", "SESSION_COOKIE_MAX_AGE_SECONDS", "TRUSTED_PROXIES", "AUTOMATIC_LOGIN_REDIRECT",
    "RESTRICT_RESOURCE_CREATION",
)


def _flag(value) -> str:
    return "true" if _bool(value) else "false"


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _int(value) -> int:
    return int(value or 0)


def mlflow_environment(settings: dict) -> dict:
    """The tracking server's environment from its settings (see mlflow_environment.yml for each key)."""
    s = settings
    jobs = _bool(s.get("enable_job_execution"))
    env = {
        s["uri_variable"]: s["backend_uri"],
        "MLFLOW_DISABLE_TELEMETRY": _flag(s.get("disable_telemetry")),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": _flag(jobs),
        "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": _flag(jobs and _bool(s.get("job_periodic_tasks"))),
        "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE": str(s.get("db_pool_recycle")),
        "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX": s["model_source_regex"],
    }
    if jobs and s.get("job_engine") == "executor":
        env["MLFLOW_SERVER_JOB_EXECUTION_ENGINE"] = "executor"
    if _int(s.get("db_pool_size")) > 0:
        env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = str(s["db_pool_size"])
    if _int(s.get("db_max_overflow")) > 0:
        env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] = str(s["db_max_overflow"])
    if _int(s.get("gcs_upload_chunk_mib")) > 0 and str(s.get("artifact_root", "")).startswith("gs://"):
        env["MLFLOW_GCS_UPLOAD_CHUNK_SIZE"] = str(_int(s["gcs_upload_chunk_mib"]) * 1048576)
    if s.get("gcs_key_file"):
        env["GOOGLE_APPLICATION_CREDENTIALS"] = s["gcs_key_file"]
    if s.get("read_replica_uri"):
        env["MLFLOW_READ_REPLICA_BACKEND_STORE_URI"] = s["read_replica_uri"]
    if _bool(s.get("gateway")):
        env["MLFLOW_CRYPTO_KEK_PASSPHRASE"] = s["kek_passphrase"]
        env["MLFLOW_CRYPTO_KEK_VERSION"] = str(s["kek_version"])
    if s.get("trace_archival_config"):
        env["MLFLOW_TRACE_ARCHIVAL_CONFIG"] = s["trace_archival_config"]
    env.update({key: value for key, value in (s.get("s3") or {}).items() if value != ""})
    if _bool(s.get("security_in_environment")):
        # Under gunicorn the CLI refuses --allowed-hosts and --cors-allowed-origins: the Flask app reads these.
        env["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(s.get("allowed_hosts") or [])
        env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] = ",".join(s.get("cors_allowed_origins") or [])
    if s.get("auth_config"):
        env["MLFLOW_AUTH_CONFIG_PATH"] = s["auth_config"]
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = s["secret_key"]
    # The mlflow-oidc-auth plugin reads its settings from the environment (empty ones left out: it takes
    # an empty value as set).
    env.update({key: str(value) for key, value in (s.get("oidc") or {}).items() if str(value) != ""})
    # The helpers' directory holds the auth app, the streaming GCS artifact repository (with its dist-info)
    # and the JSON logging of the HTTP servers.
    if s.get("auth_config") or _bool(s.get("artifact_streaming")) or _bool(s.get("json_logs")):
        env["PYTHONPATH"] = s["pythonpath"]
    if s.get("jobs_username"):
        env["MLFLOW_ANSIBLE_JOBS_USERNAME"] = s["jobs_username"]
        env["MLFLOW_TRACKING_USERNAME"] = s["jobs_username"]
        env["MLFLOW_TRACKING_PASSWORD"] = s["jobs_password"]
    if s.get("proxy_token") is not None and _bool(s.get("iap")):
        env["MLFLOW_ANSIBLE_PROXY_TOKEN"] = s["proxy_token"]
    if s.get("metrics_token"):
        # nginx's metrics listener shows it with GET /metrics (files/mlflow_ansible_auth.py).
        env["MLFLOW_ANSIBLE_METRICS_TOKEN"] = s["metrics_token"]
    env.update(s.get("extra_env") or {})
    return env


def timers_environment(env: dict, backend_uri: str, artifacts_destination: str = "") -> dict:
    """The timers' environment: the server's without its identity and secrets, the store as
    MLFLOW_TRACKING_URI (mlflow gc never gets it in its argv) and, when the server proxies artifacts,
    MLFLOW_ARTIFACTS_DESTINATION (to resolve mlflow-artifacts:/)."""
    timers = {key: value for key, value in env.items() if key not in _SERVER_ONLY}
    timers["MLFLOW_TRACKING_URI"] = backend_uri
    if artifacts_destination:
        timers["MLFLOW_ARTIFACTS_DESTINATION"] = artifacts_destination
    return timers


def env_file_value(value) -> str:
    """A value for a line KEY="VALUE" of a systemd EnvironmentFile: double-quoted, backslashes and
    double quotes escaped (systemd then reads it back unchanged, newlines excepted: refused)."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError("an environment value cannot hold a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec_arg(value) -> str:
    """One argument of a unit's ExecStart=: systemd's specifiers (%) and variable expansion ($) escaped."""
    text = str(value)
    if any(char.isspace() for char in text) or '"' in text or "'" in text or "\\" in text:
        raise ValueError(f"an ExecStart argument cannot hold spaces, quotes or backslashes: {text!r}")
    return text.replace("%", "%%").replace("$", "$$")


class FilterModule:
    """mlflow_ansible.tracking environment filters."""

    def filters(self):
        return {
            "mlflow_environment": mlflow_environment,
            "timers_environment": timers_environment,
            "env_file_value": env_file_value,
            "systemd_exec_arg": systemd_exec_arg,
        }
