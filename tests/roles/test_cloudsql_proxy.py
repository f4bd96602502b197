"""cloudsql_proxy: bad input is rejected by the preflight play with a message naming the variable,
before the deploy play starts. Uses run_site from conftest.py (site.yml --check --tags preflight on
the controller)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[2] / "molecule" / "resources" / "cloud_sql_proxy_standin.py"
STANDIN_SHA256 = hashlib.sha256(STANDIN.read_bytes()).hexdigest()
URL = "https://storage.googleapis.com/cloud-sql-connectors/cloud-sql-proxy/v2.14.0/cloud-sql-proxy.linux.amd64"
ENABLED = {
    "cloudsql_proxy_enabled": True,
    "cloudsql_proxy_instance_connection_name": "my-project:europe-west1:mlflow-db",
}

CASES = [
    (
        "no-instance",
        {"cloudsql_proxy_enabled": True, "cloudsql_proxy_binary_src": str(STANDIN)},
        r"cloudsql_proxy_enabled is true, so cloudsql_proxy_instance_connection_name must be the instance "
        r"connection name PROJECT:REGION:INSTANCE .* not ''",
    ),
    (
        "bad-instance",
        {
            **ENABLED,
            "cloudsql_proxy_instance_connection_name": "my-project/mlflow-db",
            "cloudsql_proxy_binary_src": str(STANDIN),
        },
        r"cloudsql_proxy_instance_connection_name must be .* not 'my-project/mlflow-db'",
    ),
    (
        "instance-two-parts",
        {
            **ENABLED,
            "cloudsql_proxy_instance_connection_name": "my-project:mlflow-db",
            "cloudsql_proxy_binary_src": str(STANDIN),
        },
        r"cloudsql_proxy_instance_connection_name must be",
    ),
    (
        "no-source",
        ENABLED,
        r"Set exactly one of cloudsql_proxy_binary_src .* and cloudsql_proxy_download_url .* got neither",
    ),
    (
        "both-sources",
        {
            **ENABLED,
            "cloudsql_proxy_binary_src": str(STANDIN),
            "cloudsql_proxy_download_url": URL,
            "cloudsql_proxy_sha256": "a" * 64,
        },
        r"Set exactly one of cloudsql_proxy_binary_src .* got both",
    ),
    (
        "url-without-sha256",
        {**ENABLED, "cloudsql_proxy_download_url": URL},
        r"cloudsql_proxy_download_url needs cloudsql_proxy_sha256",
    ),
    (
        "bad-sha256",
        {**ENABLED, "cloudsql_proxy_download_url": URL, "cloudsql_proxy_sha256": "abc123"},
        r"cloudsql_proxy_sha256 must be 64 hex digits, not 'abc123'",
    ),
    (
        "bad-url",
        {**ENABLED, "cloudsql_proxy_download_url": "storage.googleapis.com/proxy", "cloudsql_proxy_sha256": "a" * 64},
        r"cloudsql_proxy_download_url must be an https, http or file URL",
    ),
    (
        "src-missing",
        {**ENABLED, "cloudsql_proxy_binary_src": "/nonexistent/cloud-sql-proxy"},
        r"cloudsql_proxy_binary_src points at /nonexistent/cloud-sql-proxy, which is not a file on the controller",
    ),
    (
        "src-sha256-mismatch",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_sha256": "b" * 64},
        rf"cloudsql_proxy_binary_src \(.*\) has the SHA-256 {STANDIN_SHA256}, not cloudsql_proxy_sha256 b{{64}}",
    ),
    (
        "sigterm-delay",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_max_sigterm_delay": "10"},
        r"cloudsql_proxy_max_sigterm_delay must be a number of seconds or minutes",
    ),
    (
        "same-ports",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_http_port": 5432},
        r"cloudsql_proxy_port \(5432\) and cloudsql_proxy_http_port \(5432\) must be different",
    ),
    (
        "relative-socket-dir",
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_unix_socket_dir": "cloudsql"},
        r"cloudsql_proxy_unix_socket_dir must be an absolute directory",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_proxy_input_is_rejected_before_any_change(run_site, overrides, message):
    result = run_site(overrides)
    assert result.rc != 0
    flat = re.sub(r"\s+", " ", result.output)
    assert re.search(message, flat), result.output[-3000:]
    assert not result.deploy_started


@pytest.mark.parametrize(
    "overrides",
    [
        {**ENABLED, "cloudsql_proxy_binary_src": str(STANDIN), "cloudsql_proxy_sha256": STANDIN_SHA256.upper()},
        {
            **ENABLED,
            "cloudsql_proxy_download_url": URL,
            "cloudsql_proxy_sha256": STANDIN_SHA256,
            "cloudsql_proxy_unix_socket_dir": "/cloudsql",
        },
        # Disabled: nothing is checked, not even the missing instance and binary.
        {"cloudsql_proxy_enabled": False, "cloudsql_proxy_download_url": URL},
    ],
    ids=["src-with-matching-sha256", "url-unix-socket", "disabled"],
)
def test_good_proxy_input_passes_preflight(run_site, overrides):
    """The control cases: the same runner lets valid proxy settings through to the deploy play."""
    result = run_site(overrides)
    assert result.deploy_started, result.output[-3000:]
