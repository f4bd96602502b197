"""The accelerator (Mitogen): when it runs, when it does not and why, and that it really runs the tasks."""

from __future__ import annotations

import sys

import pytest

from mlflow_ansible import accelerator
from mlflow_ansible.cli import build_parser
from mlflow_ansible.result import ResultBuilder
from mlflow_ansible.runner import PlaybookJob, PlaybookRunner

# Each task prints the PID of the Python process that ran its module (the shell's parent). Plain
# ansible-core starts a new interpreter per task; Mitogen runs every task in one per host.
PLAYBOOK = """
- name: Two module tasks
  hosts: all
  gather_facts: false
  tasks:
    - name: One
      ansible.builtin.shell: echo "$PPID"
      register: one
      changed_when: false
    - name: Two
      ansible.builtin.shell: echo "$PPID"
      register: two
      changed_when: false
    - name: Report both interpreters
      ansible.builtin.debug:
        msg: "interpreters {{ one.stdout }} {{ two.stdout }}"
"""


def test_on_by_default_with_the_installed_mitogen():
    found = accelerator.detect({})
    assert found.enabled, found.reason
    assert found.describe() == f"mitogen {found.version}"
    env = found.env()
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (accelerator.Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()


@pytest.mark.parametrize(
    ("environ", "flag", "reason"),
    [
        ({}, False, "--no-accelerate"),
        ({"MLFLOW_ANSIBLE_ACCELERATE": "0"}, None, "MLFLOW_ANSIBLE_ACCELERATE=0"),
        ({"MLFLOW_ANSIBLE_ACCELERATE": "Off"}, None, "MLFLOW_ANSIBLE_ACCELERATE=Off"),
        ({"ANSIBLE_STRATEGY": "free"}, None, "ANSIBLE_STRATEGY=free is set"),
    ],
)
def test_off_when_asked(environ, flag, reason):
    found = accelerator.detect(environ, flag)
    assert not found.enabled
    assert found.reason == reason
    assert found.env() == {}
    assert found.describe() == f"off ({reason})"


def test_the_flag_wins_over_the_environment():
    assert accelerator.detect({"MLFLOW_ANSIBLE_ACCELERATE": "0"}, True).enabled


def test_off_for_an_ansible_core_mitogen_is_not_known_to_support(monkeypatch):
    monkeypatch.setattr(accelerator, "_ansible_core_version", lambda: (2, 99, 1))
    found = accelerator.detect({})
    assert not found.enabled
    assert found.reason == f"mitogen {found.version} is not known to support ansible-core 2.99.1"


def test_off_for_a_mitogen_too_old_for_this_ansible_core(monkeypatch, tmp_path):
    monkeypatch.setattr(accelerator, "_mitogen", lambda: ("0.3.24", tmp_path))
    found = accelerator.detect({})
    assert not found.enabled
    assert found.reason.endswith("needs mitogen >= 0.3.25, 0.3.24 is installed")


def test_off_without_mitogen(monkeypatch):
    monkeypatch.setattr(accelerator, "_mitogen", lambda: None)
    assert accelerator.detect({}).reason == "mitogen is not installed"


def test_the_cli_flag_reaches_the_actions_and_the_sandbox():
    parser = build_parser()
    assert parser.parse_args(["deploy", "-i", "x", "--no-accelerate"]).accelerate is False
    assert parser.parse_args(["deploy", "-i", "x"]).accelerate is None
    assert parser.parse_args(["sandbox", "up", "--no-accelerate"]).accelerate is False


def _run(tmp_path, accelerate):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    runner = PlaybookRunner(environ={"PATH": "/usr/bin:/bin"}, accelerate=accelerate)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    builder = ResultBuilder("test")
    messages: list[str] = []

    def handle(event: dict) -> None:
        builder.handle(event)
        result = (event.get("event_data") or {}).get("res") or {}
        if isinstance(result.get("msg"), str) and result["msg"].startswith("interpreters"):
            messages.append(result["msg"])

    outcome = runner.run(PlaybookJob(playbook=playbook, inventory=["localhost,"], extra_vars=local), on_event=handle)
    result = builder.build(rc=outcome.rc, elapsed=outcome.elapsed, accelerator=outcome.accelerator)
    assert outcome.rc == 0, outcome.output
    _, first, second = messages[0].split()
    return result, first, second


def test_accelerated_tasks_share_one_interpreter_and_its_warning_is_reported_with_it(tmp_path):
    result, first, second = _run(tmp_path, accelerate=None)
    assert first == second  # one interpreter for both tasks: Mitogen ran them
    assert result.accelerator.startswith("mitogen ")
    assert any("strategy plugins not included in ansible.builtin" in note for note in result.accelerator_notes)
    assert not any("strategy plugins" in warning for warning in result.warnings)
    assert "accelerator" in result.to_dict()


def test_plain_tasks_start_an_interpreter_each(tmp_path):
    result, first, second = _run(tmp_path, accelerate=False)
    assert first != second
    assert result.accelerator == "off (--no-accelerate)"
    assert result.accelerator_notes == []
    assert not any("strategy plugins" in warning for warning in result.warnings)


def test_the_summary_names_the_accelerator_and_its_warning():
    from io import StringIO

    from rich.console import Console

    from mlflow_ansible.result import RunResult
    from mlflow_ansible.summary import print_result

    out = StringIO()
    result = RunResult(
        action="deploy",
        rc=0,
        exit_code=0,
        accelerator="mitogen 0.3.54",
        accelerator_notes=["Use of strategy plugins not included in ansible.builtin are deprecated."],
    )
    print_result(Console(file=out, width=200), result)
    text = out.getvalue()
    assert "accelerator: mitogen 0.3.54" in text
    assert "(--no-accelerate runs without): Use of strategy plugins" in text


def test_another_deprecation_keeps_the_hint_among_the_warnings():
    builder = ResultBuilder("test")
    lines = [
        "[WARNING]: Deprecation warnings can be disabled by setting `deprecation_warnings=False` in ansible.cfg.",
        "[DEPRECATION WARNING]: Use of strategy plugins not included in ansible.builtin are deprecated.",
        "[DEPRECATION WARNING]: Some module option is deprecated.",
    ]
    builder.handle({"event": "warning", "stdout": "\n".join(lines)})
    on = accelerator.Accelerator(enabled=True, version="0.3.54", strategy_plugins="/x")
    result = builder.build(rc=0, elapsed=0.0, accelerator=on)
    assert result.warnings == [lines[0], lines[2]]
    assert result.accelerator_notes == ["Use of strategy plugins not included in ansible.builtin are deprecated."]
