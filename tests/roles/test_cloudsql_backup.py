"""tracking_server's tasks/cloudsql_backup.yml (the cloudsql_backup module), run for real by
ansible-playbook against the controller (connection local), with tracking_server_gcp_metadata_url and
tracking_server_sqladmin_url pointing at the stand-in for Google's metadata server and Cloud
SQL Admin API (molecule/resources/gcp_sqladmin_standin.py) on 127.0.0.1. The check-mode host
runs the task file with check_mode on.

Every case is one inventory host with its own stand-in server: one ansible-playbook run covers
them all (the rescue section saves each host's failure message)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "molecule" / "resources" / "gcp_sqladmin_standin.py"
INSTANCE = "my-project:europe-west1:mlflow-db"
OPERATIONS = re.compile(r"^/v1/projects/my-project/operations/(?P<name>[0-9a-f-]+)$")

PLAYBOOK = """
- name: Take a Cloud SQL backup with the tracking_server role's task file
  hosts: all
  gather_facts: false
  tasks:
    - name: Back up, and save the fact or the failure message for the test
      block:
        - name: Back up
          ansible.builtin.include_role:
            name: mlflow_ansible.tracking.tracking_server
            tasks_from: cloudsql_backup.yml
            apply:
              check_mode: "{{ backup_check_mode | default(false) }}"
        - name: Save the fact, and whether the module reported a change
          ansible.builtin.copy:
            content: >-
              {{ {'fact': __tracking_server_cloudsql_backup, 'changed': __tracking_server_cloudsql_backup_run.changed,
                  'msg': __tracking_server_cloudsql_backup_run.msg} | to_json }}
            dest: "{{ result_dir }}/{{ inventory_hostname }}.json"
            mode: "0600"
      rescue:
        - name: Save the failure message
          ansible.builtin.copy:
            content: "{{ ansible_failed_result.msg }}"
            dest: "{{ result_dir }}/{{ inventory_hostname }}.failed"
            mode: "0600"
"""

# name, stand-in settings, host variables, the failure message expected
FAILURES = [
    (
        "permission",
        {"deny": "permission"},
        {},
        r"tracking_server_cloudsql_backup_instance \('my-project:europe-west1:mlflow-db'\) could not be started: "
        r"permission denied: the VM's service account mlflow-vm@my-project.iam.gserviceaccount.com needs the IAM "
        r"permission cloudsql.backupRuns.create on project my-project .*HTTP 403: The client is not authorized",
    ),
    ("scopes", {"deny": "scopes"}, {}, r"the VM's access scopes do not allow the Cloud SQL Admin API"),
    ("api-disabled", {"deny": "disabled"}, {}, r"gcloud services enable sqladmin.googleapis.com --project my-project"),
    (
        "no-instance",
        {},
        {"tracking_server_cloudsql_backup_instance": "my-project:europe-west1:other-db"},
        r"the Cloud SQL instance other-db was not found in project my-project: "
        r"tracking_server_cloudsql_backup_instance must name an existing instance",
    ),
    (
        "operation-error",
        {"polls_until_done": 2, "operation_error": {"code": "BACKUP_FAILED", "message": "Disk quota exceeded."}},
        {},
        r"The Cloud SQL backup of tracking_server_cloudsql_backup_instance \('my-project:europe-west1:mlflow-db'\) "
        r"failed: operation [0-9a-f-]+ is DONE with the error BACKUP_FAILED: Disk quota exceeded\. "
        r"Nothing was migrated",
    ),
    (
        "timeout",
        {"polls_until_done": 100},
        {"tracking_server_cloudsql_backup_timeout": 3},
        r"was not DONE within tracking_server_cloudsql_backup_timeout \(3 s, 3 polls\): "
        r"operation [0-9a-f-]+ is RUNNING",
    ),
    (
        "poll-denied",
        {"deny_poll": True},
        {},
        r"could not be polled: operations.get at .* answered HTTP 403: The client is not authorized.*"
        r"cloudsql.instances.get",
    ),
    (
        "no-metadata-server",
        {},
        {"tracking_server_gcp_metadata_url": "http://127.0.0.1:9"},
        r"no access token came from the metadata server at http://127.0.0.1:9 \(tracking_server_gcp_metadata_url\): "
        r"it could not be reached",
    ),
]


def _load_standin():
    spec = importlib.util.spec_from_file_location("gcp_sqladmin_standin", STANDIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# name: (stand-in settings, host variables)
CASES = {
    "success": ({"polls_until_done": 3}, {}),
    # Tokens reported to expire in 63 s last (63 - 60) // 1 = 3 polls; the stand-in refuses them after 20 s.
    "renewal": ({"polls_until_done": 7, "token_expires_in": 63, "token_valid_for": 20}, {}),
    "check-mode": ({}, {"backup_check_mode": True}),
    **{name: (settings, variables) for name, settings, variables, _ in FAILURES},
}


@dataclass
class Case:
    failure: str | None
    fact: dict | None
    changed: bool | None
    msg: str | None
    requests: list[dict]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> tuple[dict[str, Case], str]:
    """Run the task file once for every case (one host each); return each host's outcome and the output."""
    standin = _load_standin()
    work = tmp_path_factory.mktemp("cloudsql_backup")
    servers, hosts = {}, {}
    for name, (settings, variables) in CASES.items():
        server = standin.make_server("127.0.0.1", 0, settings)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
        url = f"http://127.0.0.1:{server.server_address[1]}"
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "tracking_server_cloudsql_backup_instance": INSTANCE,
            "tracking_server_cloudsql_backup_poll_interval": 1,
            "tracking_server_cloudsql_backup_timeout": 20,
            "tracking_server_gcp_metadata_url": url,
            "tracking_server_sqladmin_url": url + "/",
            "mlflow_version": "3.17.2",
            **variables,
        }
    (work / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts, "vars": {"result_dir": str(work)}}}))
    (work / "backup.yml").write_text(PLAYBOOK)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    try:
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-v",  # the module's results too: no token may show there
                "-i",
                str(work / "inventory.json"),
                str(work / "backup.yml"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]  # the rescue section catches every expected failure
    results = {}
    for name, server in servers.items():
        failed, saved = work / f"{name}.failed", work / f"{name}.json"
        run = json.loads(saved.read_text()) if saved.exists() else {}
        results[name] = Case(
            failure=re.sub(r"\s+", " ", failed.read_text()) if failed.exists() else None,
            fact=run.get("fact"),
            changed=run.get("changed"),
            msg=run.get("msg"),
            requests=server.RequestHandlerClass.state.requests,
        )
    return results, output


def _polls(requests: list[dict]) -> list[dict]:
    return [r for r in requests if r["method"] == "GET" and OPERATIONS.match(r["path"])]


def _token_requests(requests: list[dict]) -> list[dict]:
    return [r for r in requests if r["path"].endswith("/service-accounts/default/token")]


def test_backup_is_taken_and_polled_until_done(cases):
    case = cases[0]["success"]
    assert case.failure is None, case.failure
    assert case.changed is True

    token_requests = _token_requests(case.requests)
    assert token_requests and all(r["metadata_flavor"] == "Google" for r in token_requests)

    inserts = [r for r in case.requests if r["method"] == "POST"]
    assert len(inserts) == 1
    insert = inserts[0]
    assert insert["path"] == "/v1/projects/my-project/instances/mlflow-db/backupRuns"
    assert insert["status"] == 200
    assert re.fullmatch(r"Bearer ya29\.standin-\S+", insert["authorization"])
    assert "upgrading the MLflow tracking server on success to MLflow 3.17.2" in insert["body"]["description"]

    polls = _polls(case.requests)
    assert len(polls) == 3, polls
    assert all(r["status"] == 200 and r["authorization"].startswith("Bearer ya29.standin-") for r in polls)
    name = OPERATIONS.match(polls[0]["path"])["name"]
    assert {r["path"] for r in polls} == {f"/v1/projects/my-project/operations/{name}"}

    assert case.fact == {
        "project": "my-project",
        "instance": "mlflow-db",
        "name": name,
        "status": "DONE",
        "targetId": "mlflow-db",
        "operationType": "BACKUP_VOLUME",
        "backupId": case.fact["backupId"],
        "startTime": case.fact["startTime"],
        "endTime": case.fact["endTime"],
        "description": insert["body"]["description"],
        "polls": 3,
    }
    assert case.fact["backupId"] and case.fact["endTime"]


def test_token_is_renewed_while_polling(cases):
    """Each polling round gets a new token: 7 polls of 3 per token take three tokens, all accepted."""
    case = cases[0]["renewal"]
    assert case.failure is None, case.failure
    assert case.fact["status"] == "DONE"
    polls = _polls(case.requests)
    assert [r["status"] for r in polls] == [200] * 7
    tokens = [r["authorization"] for r in polls]
    assert tokens[0] == tokens[2] != tokens[3] == tokens[5] != tokens[6]
    assert len(_token_requests(case.requests)) == 4  # one for backupRuns.insert, one per round


def test_check_mode_reports_and_starts_nothing(cases):
    """--check: the module says it would start a backup, reports a change, and sends no request at all."""
    case = cases[0]["check-mode"]
    assert case.failure is None, case.failure
    assert case.requests == []
    assert case.changed is True
    assert case.msg == f"would start a backup of the Cloud SQL instance {INSTANCE}"
    assert case.fact == {"project": "my-project", "instance": "mlflow-db", "name": "",
                         "status": "SKIPPED (check mode)", "targetId": "mlflow-db"}


def test_token_never_in_output(cases):
    results, output = cases
    tokens = {r["authorization"].split()[1] for case in results.values() for r in case.requests if r["authorization"]}
    assert len(tokens) >= 10
    assert not [token for token in tokens if token in output]


@pytest.mark.parametrize(("name", "message"), [(c[0], c[3]) for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_failures_are_explained(cases, name, message):
    case = cases[0][name]
    assert case.fact is None
    assert case.failure is not None
    assert re.search(message, case.failure), case.failure
