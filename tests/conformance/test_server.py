"""The server itself: health without credentials, the same MLflow version as the client, server-info."""

from __future__ import annotations


def test_health_needs_no_credentials(target):
    # Load balancers and the deployment's own checks probe it without credentials.
    response = target.request("GET", "/health", credentials=False)
    assert response.status_code == 200 and response.text.strip() == "OK"


def test_version_matches_the_client(target):
    import mlflow

    response = target.request("GET", "/version")
    assert response.status_code == 200
    assert response.text.strip() == mlflow.__version__, "server and client run different MLflow versions"


def test_server_info(target):
    response = target.request("GET", "/api/3.0/mlflow/server-info")
    assert response.status_code == 200
    info = response.json()
    assert info["store_type"] == "SqlStore"
    assert {"workspaces_enabled", "multipart_uploads_enabled", "multipart_downloads_enabled"} <= set(info)
    assert info["workspaces_enabled"] is False
