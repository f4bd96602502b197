"""tracking_server installs its helper scripts with one find and copies only what is missing or differs:
a second run changes nothing, and an edited, re-moded or deleted helper is put back (and only it);
helpers of earlier releases that are modules now are removed.
Runs the role's tasks/install.yml against the controller into a temporary directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "tracking_server" / "files"
# The start guard and the backup unit are the mlflow_schema and mlflow_backup modules' own code, from module_utils.
SOURCES = {p.name: p for p in FILES.glob("*.py")} | {
    name: REPO / "plugins/module_utils" / name for name in ("mlflow_schema.py", "mlflow_backup.py")
}
HELPERS = sorted(SOURCES)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role installs the helpers owned by root")


@pytest.fixture
def install(tmp_path):
    base = tmp_path / "opt"
    (base / "libexec").mkdir(parents=True)
    # uvicorn's logging configuration is in place already: its copy notifies a restart of the server,
    # which has no systemd to run under here (the helpers below don't: they are read at the next start).
    log_config = "mlflow_ansible_uvicorn_logging.json"
    (base / "libexec" / log_config).write_bytes((FILES / log_config).read_bytes())
    (base / "libexec" / log_config).chmod(0o644)
    playbook = tmp_path / "install.yml"
    playbook.write_text(
        "- name: Install the tracking_server helpers\n"
        "  hosts: controller\n"
        "  gather_facts: false\n"
        f"  vars: {{python_base_dir: {base}}}\n"
        "  tasks:\n"
        "    - ansible.builtin.include_role: {name: mlflow_ansible.tracking.tracking_server, tasks_from: install}\n"
    )
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    controller:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")

    def run() -> dict[str, int]:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        recap = re.search(r"^controller\s+:\s+(ok=.*)$", proc.stdout, re.M)
        assert recap, proc.stdout[-2000:]
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", recap.group(1))}

    return base / "libexec", run


def test_helpers_installed_then_left_alone_then_repaired(install):
    libexec, run = install
    # Only what must run without Ansible: the start guard, the auth function, the trace archival pass, the backup.
    assert len(HELPERS) >= 3
    # Scripts an earlier release installed and modules replaced are removed (and nothing else).
    retired = ["mlflow_canary.py", "mlflow_auth_users.py", "mlflow_s3_bucket.py"]
    for name in retired:
        (libexec / name).write_text("# an earlier release's helper\n")
    (libexec / "operator-script.py").write_text("# not the role's\n")

    assert run()["changed"] == 2
    assert not any((libexec / name).exists() for name in retired)
    assert (libexec / "operator-script.py").exists()
    for name in HELPERS:
        installed = libexec / name
        assert installed.read_bytes() == SOURCES[name].read_bytes(), name
        assert installed.stat().st_mode & 0o7777 == 0o755, name

    assert run()["changed"] == 0

    edited, remoded, deleted, *untouched = HELPERS
    with (libexec / edited).open("a") as handle:
        handle.write("# drift\n")
    (libexec / remoded).chmod(0o644)
    (libexec / deleted).unlink()
    before = {name: (libexec / name).stat().st_mtime_ns for name in untouched}

    assert run()["changed"] == 1
    for name in HELPERS:
        assert (libexec / name).read_bytes() == SOURCES[name].read_bytes(), name
        assert (libexec / name).stat().st_mode & 0o7777 == 0o755, name
    assert {name: (libexec / name).stat().st_mtime_ns for name in untouched} == before
