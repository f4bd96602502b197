"""Ctrl-C: forwarded to ansible-playbook first, then a kill, then our own KeyboardInterrupt."""

from __future__ import annotations

import signal
import subprocess

import pytest

from mlflow_ansible.runner import _Interrupt


def test_first_ctrl_c_forwards_sigint_then_escalates():
    # A shell without job control starts background jobs with SIGINT ignored, and children inherit
    # that (CI launched with `&`): give the stand-in for ansible-playbook the default disposition.
    child = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        interrupt = _Interrupt(grace=60)
        interrupt.seen({"event": "verbose"})
        interrupt.seen({"event": "playbook_on_start", "pid": child.pid})
        interrupt.seen({"event": "playbook_on_play_start", "pid": 1})  # only the first pid counts
        assert interrupt.pid == child.pid and interrupt() is False

        interrupt.interrupt()
        assert child.wait(timeout=10) == -signal.SIGINT
        assert interrupt.requested and interrupt() is False  # ansible-playbook gets its grace period

        interrupt.interrupt()
        assert interrupt() is True  # the second Ctrl-C kills
        with pytest.raises(KeyboardInterrupt):
            interrupt.interrupt()
    finally:
        child.kill()
        child.wait()


def test_grace_period_ends_in_a_kill():
    interrupt = _Interrupt(grace=0)
    interrupt.pid = 2**22 + 12345  # no such process: nothing to forward to
    interrupt.interrupt()
    assert interrupt.requested and interrupt() is True


def test_ctrl_c_before_ansible_playbook_reported_kills_at_once():
    interrupt = _Interrupt()
    interrupt.interrupt()
    assert interrupt() is True
