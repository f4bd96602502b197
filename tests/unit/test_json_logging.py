"""roles/tracking_server/files/mlflow_ansible_logging.py (JSON log lines), under the real uvicorn and gunicorn
with the configurations the role passes them (the uvicorn JSON log config, the gunicorn settings module):
each request gives one JSON access line with the request id it carried and the operator's fields, a line the
app logs while serving it carries the same id, the password of a basic-auth header appears nowhere, healthy
/health checks are not logged, and a text config (MLflow's own) would not pass these checks."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "roles/tracking_server/files"
PASSWORD = "s3cret-Pa55word-never-logged"
sys.path.insert(0, str(FILES))
import mlflow_ansible_logging as logmod  # noqa: E402

# A stand-in for MLflow's app: logs on MLflow's logger while serving, answers 200 with a body of 5 bytes, or
# 404. Importing MLflow gives its logger a text handler of its own on stderr (mlflow/utils/logging_utils.py),
# after the server's logging config: so does this.
APP = textwrap.dedent('''
    import logging
    import sys
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mlflow").handlers = [handler]
    logging.getLogger("mlflow").propagate = False
    log = logging.getLogger("mlflow.server.stand_in")

    def wsgi(environ, start_response):
        path = environ["PATH_INFO"]
        if path != "/health":
            log.warning("serving %s", path)
        status = "200 OK" if path in ("/health", "/api/2.0/mlflow/experiments/get") else "404 Not Found"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"hello"]

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        from starlette.concurrency import run_in_threadpool
        await run_in_threadpool(log.warning, "serving %s", scope["path"]) if scope["path"] != "/health" else None
        status = 200 if scope["path"] in ("/health", "/api/2.0/mlflow/experiments/get") else 404
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})
''')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, headers: dict) -> int:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _serve(tmp_path: Path, argv: list[str], port: int) -> str:
    """Start the server, make the requests, stop it; its output (stdout and stderr)."""
    (tmp_path / "stand_in_app.py").write_text(APP)
    env = dict(os.environ, PYTHONPATH=f"{FILES}{os.pathsep}{tmp_path}")
    out = tmp_path / "out.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while _try(f"http://127.0.0.1:{port}/health") is None:
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.2)
            auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
            assert _get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get?experiment_id=1&token=q",
                        {"X-Request-ID": "0123456789abcdef0123456789abcdef", "Authorization": f"Basic {auth}"}) == 200
            assert _get(f"http://127.0.0.1:{port}/nowhere", {"X-Request-ID": "fedcba9876543210fedcba9876543210"}) == 404
            assert _get(f"http://127.0.0.1:{port}/nowhere", {"X-Request-ID": 'bad"id\\'}) == 404
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return out.read_text()


def _try(url: str) -> int | None:
    try:
        return _get(url, {})
    except OSError:
        return None


def _lines(output: str) -> list[dict]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _check(output: str) -> None:
    assert PASSWORD not in output
    assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in output
    lines = _lines(output)
    access = [line for line in lines if "status" in line]
    first = [line for line in access if line.get("request_id") == "0123456789abcdef0123456789abcdef"]
    assert len(first) == 1, access
    entry = first[0]
    assert entry["user"] == "alice"
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/2.0/mlflow/experiments/get"  # the query string is left out
    assert "token=q" not in output
    assert entry["status"] == 200
    assert entry["bytes"] == 5
    assert isinstance(entry["latency_s"], float) and entry["latency_s"] >= 0
    assert entry["level"] == "INFO" and entry["time"].endswith("+00:00")
    second = [line for line in access if line.get("request_id") == "fedcba9876543210fedcba9876543210"]
    assert [(line["status"], line["path"], line["user"]) for line in second] == [(404, "/nowhere", None)]
    # A value that does not look like an id is not kept. (The two 404s in either order: a server thread writes
    # its access line after the response, so under load the second request's line may come first.)
    assert sorted(line.get("request_id") or "" for line in access if line["status"] == 404) == [
        "", "fedcba9876543210fedcba9876543210"]
    assert not [line for line in access if line["path"] == "/health"]
    # MLflow's logger, while serving the request, with the request's id.
    served = [line for line in lines if line.get("logger") == "mlflow.server.stand_in"]
    assert {(line["message"], line.get("request_id")) for line in served} >= {
        ("serving /api/2.0/mlflow/experiments/get", "0123456789abcdef0123456789abcdef"),
        ("serving /nowhere", "fedcba9876543210fedcba9876543210")}


pytest.importorskip("uvicorn")
pytest.importorskip("gunicorn")


def test_uvicorn_json_access_lines_with_request_id(tmp_path):
    port = _free_port()
    output = _serve(tmp_path, [sys.executable, "-m", "uvicorn", "--log-config",
                               str(FILES / "mlflow_ansible_uvicorn_logging.json"), "--port", str(port),
                               "--workers", "1", "stand_in_app:asgi"], port)
    _check(output)


def test_gunicorn_json_access_lines_with_request_id(tmp_path):
    port = _free_port()
    output = _serve(tmp_path, [sys.executable, "-m", "gunicorn", "-c", "python:mlflow_ansible_gunicorn_logging",
                               "--worker-class", "gthread", "--threads", "2", "-b", f"127.0.0.1:{port}", "-w", "1",
                               "stand_in_app:wsgi"], port)
    _check(output)
    # gunicorn's own lines (worker boot) are JSON too.
    assert any(line.get("logger") == "gunicorn.error" for line in _lines(output))


def test_the_checks_fail_on_mlflows_text_logs(tmp_path):
    """MLflow's own uvicorn log config (text, no request id): the same checks fail."""
    mlflow = importlib.util.find_spec("mlflow")
    port = _free_port()
    output = _serve(tmp_path, [sys.executable, "-m", "uvicorn", "--log-config",
                               str(Path(mlflow.origin).parent / "server/uvicorn_log_config.yaml"),
                               "--port", str(port), "stand_in_app:asgi"], port)
    with pytest.raises(AssertionError):
        _check(output)


@pytest.mark.parametrize(("header", "user"), [
    ("Basic " + base64.b64encode(b"bob:pw:with:colons").decode(), "bob"),
    ("basic " + base64.b64encode(b"carol:x").decode(), "carol"),
    ("Basic " + base64.b64encode(b"password-only").decode(), None),
    ("Basic not-base64!", None),
    ("Bearer abc", None),
    (None, None),
])
def test_basic_auth_user_never_the_password(header, user):
    assert logmod.basic_auth_user(header) == user


def test_without_the_middleware_uvicorns_own_line_is_json_without_query(monkeypatch):
    """A uvicorn without Config.load: its own access line is kept, as JSON, the query string left out."""
    monkeypatch.setattr(logmod, "_uvicorn_middleware", False)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5555", "GET", "/api/2.0/mlflow/runs/get?run_id=1", "1.1", 200), None)
    assert logmod.UvicornAccessFilter().filter(record)
    line = json.loads(logmod.JsonFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/2.0/mlflow/runs/get", 200)
    health = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s", ("c", "GET", "/health", "1.1", 200),
                               None)
    assert not logmod.UvicornAccessFilter().filter(health)
    monkeypatch.setattr(logmod, "_uvicorn_middleware", True)
    assert not logmod.UvicornAccessFilter().filter(record)
