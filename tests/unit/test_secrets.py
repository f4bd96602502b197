"""Secrets reach the play through the environment only: never a file, an argv or the output.

These run real ansible-playbook processes (through ansible-runner) against localhost with a tiny
playbook; the vars plugin is the collection's own (plugins/vars/env_secrets.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from mlflow_ansible import api
from mlflow_ansible.collection import Collection, find_collection
from mlflow_ansible.env_vars import JSON_PREFIX, PREFIX, child_env, read_env_vars
from mlflow_ansible.runner import PlaybookJob, PlaybookRunner

PASSWORD = "pw-7f3a9c-never-on-disk"  # a value that cannot appear by accident
STRAY = "stray-token-5b2e"

# Uses the secret, proves it arrived (its sha256), and lists every process's argv while it runs.
PLAYBOOK = """
- name: Secrets
  hosts: all
  gather_facts: false
  tasks:
    - name: The secret arrived
      ansible.builtin.debug:
        msg: "sha256 {{ cloudsql_client_password | hash('sha256') }} port {{ tracking_server_port | default(0) }}"
    - name: Every process's command line
      ansible.builtin.shell: for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < "$f" 2>/dev/null; echo; done
      changed_when: false
    - name: What the play sees of the environment
      ansible.builtin.debug:
        msg: "stray=[{{ lookup('env', 'STRAY_TOKEN') }}] home=[{{ lookup('env', 'HOME') }}]"
"""


@pytest.fixture
def work(tmp_path) -> dict[str, Path]:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "secrets.yml").write_text(PLAYBOOK)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "mlflow_servers": {
                            "hosts": {
                                "controller": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": sys.executable,
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    return {"root": tmp_path, "inventory": inventory}


class DiskSnapshot:
    """Everything in the private data directory just before it is removed."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.special: list[str] = []
        self.directory: Path | None = None

    def __call__(self, private_data_dir: Path) -> None:
        self.directory = private_data_dir
        for path in private_data_dir.rglob("*"):
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                self.files[str(path.relative_to(private_data_dir))] = path.read_bytes()
            elif not stat.S_ISDIR(mode):
                self.special.append(str(path.relative_to(private_data_dir)))


def _collection(root: Path) -> Collection:
    """The real collection path (for the vars plugin), with this test's playbooks."""
    real = find_collection()
    return Collection(root=root, collections_path=real.collections_path, from_checkout=True)


def _check_nowhere(secret: str, snapshot: DiskSnapshot, events: list[dict], command: list[str]) -> None:
    assert snapshot.files, "the snapshot saw no files"
    leaked = [name for name, content in snapshot.files.items() if secret.encode() in content]
    assert leaked == []
    assert snapshot.special == []  # the command FIFO is gone
    assert secret not in " ".join(command)
    assert secret not in json.dumps(events)


def test_a_password_from_the_environment_reaches_the_play_and_nothing_else(work):
    snapshot = DiskSnapshot()
    events: list[dict] = []
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "STRAY_TOKEN": STRAY,
        f"{PREFIX}cloudsql_client_password": PASSWORD,
    }
    runner = PlaybookRunner(_collection(work["root"]), environ=environ, before_cleanup=snapshot)
    values, _ = read_env_vars(environ)
    job = PlaybookJob(
        playbook=work["root"] / "playbooks" / "secrets.yml",
        inventory=[str(work["inventory"])],
        extra_vars={"tracking_server_port": 5001},
        secret_vars=values,
    )
    outcome = runner.run(job, on_event=events.append)

    assert outcome.rc == 0, outcome.output
    expected = hashlib.sha256(PASSWORD.encode()).hexdigest()
    messages = [e["event_data"]["res"].get("msg", "") for e in events if e["event"] == "runner_on_ok"]
    assert f"sha256 {expected} port 5001" in messages
    assert f"stray=[] home=[{environ['HOME']}]" in messages  # the allow-list dropped STRAY_TOKEN
    ps = next(
        e["event_data"]["res"]["stdout"]
        for e in events
        if e["event"] == "runner_on_ok" and e["event_data"].get("task") == "Every process's command line"
    )
    assert "ansible-playbook" in ps and PASSWORD not in ps  # no process's argv holds it
    _check_nowhere(PASSWORD, snapshot, events, outcome.command)
    assert outcome.command[0].endswith("ansible-playbook") and "--ask-vault-pass" not in outcome.command
    assert "env/extravars" in snapshot.files and b"5001" in snapshot.files["env/extravars"]
    assert not any(name.startswith("env/") and name != "env/extravars" for name in snapshot.files)
    assert not any("/job_events/" in name for name in snapshot.files)
    assert snapshot.directory is not None and not snapshot.directory.exists()  # removed after the run


def test_a_no_log_extra_var_takes_the_environment_route(work, monkeypatch):
    """``-e cloudsql_client_password=...`` (no_log in the specs) never lands in env/extravars."""
    snapshot = DiskSnapshot()
    events: list[dict] = []
    collection = _collection(work["root"])
    schema, _ = api._schemas(find_collection())
    launcher = api._Launcher(collection, schema, playbook="secrets", label="secrets")
    result = launcher.run(
        str(work["inventory"]),
        require=False,
        options={
            "extra_vars": [f"cloudsql_client_password={PASSWORD}", "tracking_server_port=5002"],
            "environ": {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
            "on_event": events.append,
            "before_cleanup": snapshot,
        },
    )
    assert result.ok, result
    expected = hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert any(f"sha256 {expected} port 5002" in json.dumps(e) for e in events)
    _check_nowhere(PASSWORD, snapshot, events, result.command)
    assert json.loads(snapshot.files["env/extravars"]) == {"tracking_server_port": 5002}


def test_the_private_data_dir_is_removed_when_the_run_fails_to_start(work, monkeypatch):
    snapshot = DiskSnapshot()
    runner = PlaybookRunner(_collection(work["root"]), environ={"PATH": os.environ["PATH"]}, before_cleanup=snapshot)

    def broken(self, *args, **kwargs):
        raise OSError("no pty")

    monkeypatch.setattr("ansible_runner.runner.Runner.run", broken)
    from mlflow_ansible.errors import RunnerError

    with pytest.raises(RunnerError, match="ansible-runner failed: OSError: no pty"):
        runner.run(PlaybookJob(playbook=work["root"] / "playbooks" / "secrets.yml", inventory=[str(work["inventory"])]))
    assert snapshot.directory is not None and not snapshot.directory.exists()


def test_child_env_encodes_strings_and_json():
    assert child_env({"a": "x", "b": 5, "c": [1], "d": {"k": True}}) == {
        f"{PREFIX}a": "x",
        f"{JSON_PREFIX}b": "5",
        f"{JSON_PREFIX}c": "[1]",
        f"{JSON_PREFIX}d": '{"k": true}',
    }
