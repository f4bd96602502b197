"""The cloudsql_backup module's answers to what the stand-in cannot play: a real HTTP server on
loopback answers each request from a script (status and JSON body per path, in order), and the
module's HTTP client (module_utils/gcp_rest.py) talks to it as to Google's endpoints.

The task file and Google's usual answers (permission, scopes, disabled API, timeout, token renewal,
check mode) are tested through ansible-playbook in tests/roles/test_cloudsql_backup.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible.module_utils.testing import patch_module_args
from module_loader import load_module

backup_module = load_module("cloudsql_backup")

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
EMAIL_PATH = "/computeMetadata/v1/instance/service-accounts/default/email"
INSERT_PATH = "/v1/projects/my-project/instances/mlflow-db/backupRuns"
OPERATION_PATH = "/v1/projects/my-project/operations/op-1"
RUNNING = {"name": "op-1", "status": "RUNNING", "targetId": "mlflow-db"}
DONE = {**RUNNING, "status": "DONE", "operationType": "BACKUP_VOLUME", "backupContext": {"backupId": "42"},
        "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:01:00Z"}


def google_error(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "reason": "x"}]}}


class Scripted:
    """A loopback HTTP server answering each path from its list of (status, body), in order; the last
    answer repeats. Tokens are numbered, so a test sees which token each request carried."""

    def __init__(self, script: dict[str, list[tuple[int, object]]]):
        self.script = {path: list(answers) for path, answers in script.items()}
        self.requests: list[tuple[str, str, str | None]] = []
        self.tokens = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((method, self.path, self.headers.get("Authorization")))
                answers = outer.script.get(self.path, [(404, "Not Found")])
                status, body = answers.pop(0) if len(answers) > 1 else answers[0]
                if body == "TOKEN":
                    outer.tokens += 1
                    body = {"access_token": f"token-{outer.tokens}", "expires_in": 3599}
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):  # noqa: N802
                self._answer("GET")

            def do_POST(self):  # noqa: N802
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls(self, path: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[1] == path]


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    servers = []

    def start(script):
        servers.append(Scripted(script))
        return servers[-1]

    yield start
    for server in servers:
        server.server.shutdown()
        server.server.server_close()


def backup(server: Scripted, sleeps: list, **params):
    params = {"instance": "my-project:europe-west1:mlflow-db", "description": "before the upgrade", "timeout": 20,
              "poll_interval": 1, "metadata_url": server.url, "sqladmin_url": server.url + "/",
              "names": {"instance": "tracking_server_cloudsql_backup_instance"}, **params}
    return backup_module.Backup(params, sleep=sleeps.append)


def test_busy_instance_is_tried_six_times(serve):
    server = serve({TOKEN_PATH: [(200, "TOKEN")], INSERT_PATH: [(409, google_error(409, "Operation in progress."))]})
    sleeps = []
    with pytest.raises(backup_module.BackupError) as failed:
        backup(server, sleeps).run()
    assert "another operation kept running on the instance (HTTP 409, 6 tries)" in str(failed.value)
    assert str(failed.value).endswith("HTTP 409: Operation in progress.]")
    assert len(server.calls(INSERT_PATH)) == 6
    assert sleeps == [1] * 5


def test_insert_and_polls_go_on_through_busy_answers(serve):
    server = serve({
        TOKEN_PATH: [(200, "TOKEN")],
        INSERT_PATH: [(503, google_error(503, "Unavailable.")), (200, {**RUNNING, "status": "PENDING"})],
        OPERATION_PATH: [(502, "bad gateway"), (200, RUNNING), (200, DONE)],
    })
    sleeps = []
    result = backup(server, sleeps).run()
    assert result == {"project": "my-project", "instance": "mlflow-db", "name": "op-1", "status": "DONE",
                      "targetId": "mlflow-db", "operationType": "BACKUP_VOLUME", "backupId": "42",
                      "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:01:00Z",
                      "description": "before the upgrade", "polls": 3}
    assert len(server.calls(INSERT_PATH)) == 2
    assert sleeps == [1, 1, 1]  # one between the inserts, one between each two polls


def test_rejected_token_is_replaced_at_once(serve):
    server = serve({
        TOKEN_PATH: [(200, "TOKEN")],
        INSERT_PATH: [(200, RUNNING)],
        OPERATION_PATH: [(200, RUNNING), (401, google_error(401, "Request had invalid authentication credentials.")),
                         (200, DONE)],
    })
    sleeps = []
    result = backup(server, sleeps).run()
    assert result["polls"] == 3
    tokens = [auth for _, _, auth in server.calls(OPERATION_PATH)]
    assert tokens == ["Bearer token-2", "Bearer token-2", "Bearer token-3"]
    assert sleeps == [1]  # between the first two polls; none before the new token's


@pytest.mark.parametrize(("answer", "message"), [
    ((404, "Not Found"), "HTTP 404, the VM has no service account attached (with the VM stopped: gcloud compute "
                         "instances set-service-account VM --service-account=SA --scopes=cloud-platform)."),
    ((200, {"token_type": "Bearer"}), "the answer holds no access_token."),
    ((500, "oops"), "HTTP 500 (HTTP Error 500: Internal Server Error)."),
])
def test_no_token_is_explained(serve, answer, message):
    server = serve({TOKEN_PATH: [answer]})
    with pytest.raises(backup_module.BackupError) as failed:
        backup(server, []).run()
    assert str(failed.value) == (
        f"tracking_server_cloudsql_backup_instance is set, but no access token came from the metadata server at "
        f"{server.url} (metadata_url): {message}"
    )
    assert server.calls(INSERT_PATH) == []


def test_insert_without_operation(serve):
    server = serve({TOKEN_PATH: [(200, "TOKEN")], INSERT_PATH: [(200, {"kind": "sql#operation"})]})
    with pytest.raises(backup_module.BackupError, match=r"could not be started: the answer names no operation\. "
                       r"\[backupRuns.insert at http://127.0.0.1:\d+/ \(sqladmin_url\): HTTP 200\]"):
        backup(server, []).run()


def test_operation_errors_are_listed(serve):
    errors = [{"code": "BACKUP_FAILED", "message": "Disk quota exceeded. "}, {"message": "Second."}]
    server = serve({TOKEN_PATH: [(200, "TOKEN")], INSERT_PATH: [(200, RUNNING)],
                    OPERATION_PATH: [(200, {**DONE, "error": {"errors": errors}})]})
    with pytest.raises(backup_module.BackupError) as failed:
        backup(server, []).run()
    assert "is DONE with the error BACKUP_FAILED: Disk quota exceeded; ?: Second. Nothing was migrated" in str(
        failed.value)


def test_unreachable_api(serve):
    server = serve({TOKEN_PATH: [(200, "TOKEN")]})
    with pytest.raises(backup_module.BackupError) as failed:
        backup(server, [], sqladmin_url="http://127.0.0.1:9").run()
    assert "could not be started: the Cloud SQL Admin API could not be reached (Request failed: " in str(failed.value)
    assert str(failed.value).endswith("[backupRuns.insert at http://127.0.0.1:9 (sqladmin_url): HTTP -1]")


def run_main(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        backup_module.main()
    return json.loads(capsys.readouterr().out)


def test_check_mode_sends_nothing(serve, capsys):
    server = serve({TOKEN_PATH: [(200, "TOKEN")]})
    result = run_main(capsys, _ansible_check_mode=True, instance="example.com:my-project:europe-west1:mlflow-db",
                      metadata_url=server.url, sqladmin_url=server.url)
    assert result["changed"] is True
    assert result["msg"] == ("would start a backup of the Cloud SQL instance "
                             "example.com:my-project:europe-west1:mlflow-db")
    assert result["backup"] == {"project": "example.com:my-project", "instance": "mlflow-db", "name": "",
                                "status": "SKIPPED (check mode)", "targetId": "mlflow-db"}
    assert server.requests == []


@pytest.mark.parametrize(("args", "message"), [
    ({"instance": "my-project/mlflow-db"},
     "instance must be the Cloud SQL instance as PROJECT:REGION:INSTANCE, not 'my-project/mlflow-db'."),
    ({"instance": "p:r:i", "timeout": 5, "poll_interval": 10}, "poll_interval (10) must be at least 1 and not above "
     "timeout (5)."),
])
def test_arguments_are_checked(capsys, args, message):
    result = run_main(capsys, **args)
    assert result["failed"] is True
    assert result["msg"] == message
