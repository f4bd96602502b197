"""ansible-runner events -> live progress and the result object (recorded and synthetic events)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from mlflow_ansible.progress import (
    NoProgress,
    PlainProgress,
    ProgressState,
    RichProgress,
    load_expected,
    make_view,
    save_expected,
)
from mlflow_ansible.result import ResultBuilder, failure_message

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def recorded() -> list[dict]:
    """A real run of a tiny playbook on two hosts: 5 tasks, h1 skips the last, h2 fails it."""
    return json.loads((DATA / "events_failed_run.json").read_text())


def _event(kind: str, **data) -> dict:
    return {"event": kind, "event_data": data, "stdout": ""}


def test_recorded_events_drive_the_progress_state(recorded):
    state = ProgressState(expected={"Tiny play": 5})
    lines = [line for event in recorded for line in state.apply(event)]
    assert lines[0] == ("play", "PLAY Tiny play")
    assert ("task", "TASK [1/5] Say hi") in lines
    assert ("task", "TASK [5/5] Fail") in lines
    assert ("changed", "  changed: h1") in lines
    assert ("failed", "  failed: h2: boom on purpose") in lines
    assert state.play.tasks == 5
    assert state.finished
    assert state.hosts["h1"].state == "skipped" and state.hosts["h1"].changed == 1
    assert state.hosts["h2"].state == "failed" and state.hosts["h2"].failed == 1
    assert state.task_counts() == {"Tiny play": 5}


def test_recorded_events_build_the_result(recorded):
    builder = ResultBuilder("deploy")
    for event in recorded:
        builder.handle(event)
    result = builder.build(rc=2, elapsed=2.5)
    assert result.exit_code == 2 and not result.ok
    assert {host: (s.ok, s.changed, s.failed, s.skipped) for host, s in result.hosts.items()} == {
        "h1": (4, 1, 0, 1),
        "h2": (4, 1, 1, 0),
    }
    assert result.failure is not None
    assert (result.failure.host, result.failure.task, result.failure.message) == ("h2", "Fail", "boom on purpose")
    assert result.tracking_urls == {"h1": "http://x", "h2": "http://x"}
    assert result.to_dict()["failed"] == 1
    assert json.loads(json.dumps(result.to_dict()))["failures"][0]["action"] == "ansible.builtin.fail"


def test_task_labels_carry_the_role_and_the_count_without_history():
    state = ProgressState()
    state.apply(_event("playbook_on_play_start", name="Deploy"))
    lines = state.apply(_event("playbook_on_task_start", task="Install packages", role="python"))
    assert lines == [("task", "TASK [1] python : Install packages")]
    state.apply(_event("runner_on_start", host="vm", task="Install packages", role="python"))
    assert (state.hosts["vm"].task, state.hosts["vm"].state) == ("python : Install packages", "running")


def test_more_tasks_than_last_time_stop_showing_a_total():
    state = ProgressState(expected={"Deploy": 1})
    state.apply(_event("playbook_on_play_start", name="Deploy"))
    assert state.apply(_event("playbook_on_task_start", task="a")) == [("task", "TASK [1/1] a")]
    assert state.apply(_event("playbook_on_task_start", task="b")) == [("task", "TASK [2] b")]


@pytest.mark.parametrize(
    ("kind", "data", "state", "line"),
    [
        ("runner_on_ok", {"res": {"changed": False}}, "ok", None),
        ("runner_on_ok", {"res": {"changed": True}}, "changed", "  changed: vm"),
        ("runner_on_skipped", {}, "skipped", None),
        (
            "runner_on_unreachable",
            {"res": {"msg": "ssh: timeout\nmore"}},
            "unreachable",
            "  unreachable: vm: ssh: timeout",
        ),
        ("runner_on_failed", {"res": {"msg": "apt failed"}}, "failed", "  failed: vm: apt failed"),
        ("runner_on_failed", {"res": {"msg": "x"}, "ignore_errors": True}, "ok", None),
    ],
)
def test_host_results(kind, data, state, line):
    progress = ProgressState()
    lines = progress.apply(_event(kind, host="vm", task="t", **data))
    assert progress.hosts["vm"].state == state
    assert lines == ([(state, line)] if line else [])


def test_unreachable_and_rescued_failures_in_the_result():
    builder = ResultBuilder("deploy")
    builder.handle(_event("runner_on_failed", host="a", task="Wait for /health", res={"msg": "timeout"}))
    builder.handle(_event("runner_on_unreachable", host="b", task="Gather", res={"msg": "no route"}))
    builder.handle(
        _event(
            "playbook_on_stats", ok={"a": 3}, failures={}, dark={"b": 1}, rescued={"a": 1}, processed={"a": 1, "b": 1}
        )
    )
    result = builder.build(rc=4, elapsed=1.0)  # ansible-core's code for unreachable hosts (and parse errors)
    assert [(f.host, f.unreachable) for f in result.failures] == [("b", True)]  # a's failure was rescued
    assert result.exit_code == 3 and result.unreachable == 1 and result.hosts["a"].rescued == 1


def test_failed_and_unreachable_hosts_exit_2_and_a_parse_error_stays_4():
    both = ResultBuilder("deploy")
    both.handle(_event("runner_on_failed", host="a", task="Wait for /health", res={"msg": "timeout"}))
    both.handle(_event("runner_on_unreachable", host="b", task="Gather", res={"msg": "no route"}))
    both.handle(_event("playbook_on_stats", ok={"a": 3}, failures={"a": 1}, dark={"b": 1}, processed={"a": 1, "b": 1}))
    assert both.build(rc=6, elapsed=1.0).exit_code == 2  # ansible-core ORs the bits of failed (2) and unreachable (4)
    parse = ResultBuilder("deploy")  # a parse error stops ansible-playbook before any play: no counters
    parse.handle({"event": "error", "stdout": "[ERROR]: couldn't resolve module/action 'x'"})
    assert parse.build(rc=4, elapsed=1.0, output=["[ERROR]: couldn't resolve module/action 'x'"]).exit_code == 4


def test_status_and_canary_come_from_set_stats():
    builder = ResultBuilder("status")
    builder.handle(
        _event(
            "playbook_on_stats",
            ok={"vm": 4},
            processed={"vm": 1},
            artifact_data={
                "mlflow_status": {
                    "vm": {"service": "active", "healthy": True, "version": "3.17.2", "url": "http://vm"}
                },
                "mlflow_tracking_urls": {"vm": "http://vm"},
            },
        )
    )
    result = builder.build(rc=0, elapsed=1.0)
    assert result.ok and result.status["vm"]["version"] == "3.17.2" and result.tracking_url == "http://vm"
    assert result.canary is None


def test_an_error_outside_tasks_is_kept():
    builder = ResultBuilder("deploy")
    output = ["[ERROR]: the role 'nope' was not found", "Origin: /x/site.yml:3:7", "PLAY RECAP"]
    result = builder.build(rc=4, elapsed=0.5, output=output)
    assert result.exit_code == 4
    assert result.error == "the role 'nope' was not found\nOrigin: /x/site.yml:3:7"


def test_interrupted_run_exits_99():
    assert ResultBuilder("deploy").build(rc=254, elapsed=1.0, interrupted=True).exit_code == 99


@pytest.mark.parametrize(
    ("res", "message"),
    [
        (
            {"msg": "non-zero return code", "stderr": "E: Unable to locate package foo", "rc": 100},
            "non-zero return code\nE: Unable to locate package foo",
        ),
        (
            {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"},
            "the output has",
        ),
        (
            {
                "msg": "One or more items failed",
                "results": [{"failed": False}, {"failed": True, "item": "pkg", "msg": "404"}],
            },
            "One or more items failed (item pkg: 404)",
        ),
        ({"rc": 3}, "exit status 3"),
        ({}, "failed (no message)"),
    ],
)
def test_failure_messages(res, message):
    assert failure_message(res).startswith(message)


def test_plain_view_prints_lines(recorded):
    stream = io.StringIO()
    with PlainProgress(ProgressState(), stream) as view:
        for event in recorded:
            view.handle(event)
    text = stream.getvalue()
    assert "PLAY Tiny play\nTASK [1] Say hi\nTASK [2] Change something\n" in text
    assert "  failed: h2: boom on purpose" in text


def test_rich_view_renders_the_bar_and_the_hosts(recorded):
    stream = io.StringIO()
    console = Console(file=stream, width=140, force_terminal=False)
    state = ProgressState(expected={"Tiny play": 5})
    view = RichProgress(state, console, "mlflow-ansible deploy")
    for event in recorded[:12]:
        view.handle(event)
    console.print(view.render())
    text = stream.getvalue()
    assert "mlflow-ansible deploy: Tiny play" in text
    assert "2/5 tasks" in text and "Change something" in text
    assert "h1" in text and "h2" in text


def test_view_choice():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    state = ProgressState()
    assert isinstance(make_view(state, io.StringIO(), "t"), PlainProgress)
    assert isinstance(make_view(state, Tty(), "t"), RichProgress)
    assert isinstance(make_view(state, Tty(), "t", quiet=True), NoProgress)


def test_task_counts_are_remembered_per_action(state_home):
    assert load_expected("deploy") == {}
    save_expected("deploy", {"Preflight": 29, "Deploy": 69})
    assert load_expected("deploy") == {"Preflight": 29, "Deploy": 69}
    assert load_expected("verify") == {}
    assert oct((state_home / "mlflow-ansible" / "task-counts.json").stat().st_mode & 0o777) == "0o600"


def test_a_run_without_hosts_is_not_a_success():
    builder = ResultBuilder("deploy")
    auto = "[WARNING]: Failed to parse inventory with 'auto' plugin: Your default credentials were not found."
    builder.handle({"event": "verbose", "stdout": auto})
    builder.handle({"event": "verbose", "stdout": "[WARNING]: Unable to parse /x/gcp.yml as an inventory source"})
    builder.handle(
        {"event": "warning", "stdout": "[WARNING]: Could not match supplied host pattern, ignoring: mlflow_servers"}
    )
    builder.handle(_event("playbook_on_no_hosts_matched"))
    builder.handle(_event("playbook_on_stats", ok={}, processed={}))
    result = builder.build(rc=0, elapsed=1.0)
    assert result.exit_code == 4 and not result.ok
    assert result.error == (
        "no host matched the plays' hosts: nothing ran "
        "(Failed to parse inventory with 'auto' plugin: Your default credentials were not found.)"
    )
    assert len(result.warnings) == 3 and result.warnings[2].endswith("ignoring: mlflow_servers")


def test_a_pattern_matching_nothing_exits_1():
    builder = ResultBuilder("status")
    builder.handle({"event": "warning", "stdout": "[WARNING]: Could not match supplied host pattern, ignoring: x"})
    assert builder.build(rc=0, elapsed=1.0).exit_code == 1


def test_canary_lines_from_the_modules_reports():
    """The mlflow_canary module's report per host (set_stats mlflow_canary) as the summary prints it."""
    from mlflow_ansible.summary import canary_lines

    lines = [
        line.plain
        for line in canary_lines(
            {
                "a": {"ok": True, "url": "http://127.0.0.1:5000", "version": "3.17.2", "run_id": "r1"},
                "b": {"ok": True, "version": "3.17.2", "check_mode": True},
                "c": {"ok": False, "error": "runs/create failed: HTTP 403"},
                "d": {},
            }
        )
    ]
    assert lines == [
        "canary a: ok (version 3.17.2, run_id r1)",
        "canary b: ok (version 3.17.2, check mode: health and version only)",
        "canary c: FAILED runs/create failed: HTTP 403",
    ]
