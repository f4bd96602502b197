"""PlaybookRunner: a failing event handler never orphans ansible-playbook, and is reported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlflow_ansible.errors import RunnerError
from mlflow_ansible.runner import PlaybookJob, PlaybookRunner

PLAYBOOK = """
- name: Two tasks
  hosts: all
  gather_facts: false
  tasks:
    - name: One
      ansible.builtin.debug:
        msg: one
    - name: Two
      ansible.builtin.debug:
        msg: two
"""


def test_a_failing_event_handler_is_reported_after_the_run(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    seen: list[Path] = []
    calls: list[str] = []

    def broken(event: dict) -> None:
        calls.append(event["event"])
        raise ValueError("progress bug")

    runner = PlaybookRunner(environ={"PATH": "/usr/bin:/bin"}, before_cleanup=seen.append)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    job = PlaybookJob(playbook=playbook, inventory=["localhost,"], extra_vars=local)
    with pytest.raises(RunnerError, match="the event handler failed: ValueError: progress bug"):
        runner.run(job, on_event=broken)
    assert calls == ["playbook_on_start"]  # not called again after it failed
    assert seen and not seen[0].exists()
