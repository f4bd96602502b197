"""Live progress from ansible-runner events: the state (pure), and two views of it (rich, plain lines).

The play's task count is not known before it runs (roles are included dynamically), so the bar's total is
the number of tasks the same action's play ran last time (kept in the state directory); the first time,
the bar pulses.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mlflow_ansible.state import read_json, state_dir, write_private_json

_MAX_HOST_ROWS = 20
_STYLES = {"failed": "bold red", "unreachable": "bold magenta", "changed": "yellow", "ok": "green", "skipped": "cyan"}


@dataclass
class HostProgress:
    task: str = ""
    state: str = "waiting"  # running, ok, changed, skipped, failed, unreachable
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class PlayProgress:
    name: str
    tasks: int = 0  # tasks started so far
    expected: int | None = None  # tasks the play ran last time


def task_label(data: Mapping[str, Any]) -> str:
    task = str(data.get("task") or data.get("name") or "").strip()
    role = str(data.get("role") or "").strip()
    return f"{role} : {task}" if role else task


@dataclass
class ProgressState:
    """What is happening, from the events seen so far."""

    expected: Mapping[str, int] = field(default_factory=dict)  # play name -> tasks it ran last time
    plays: list[PlayProgress] = field(default_factory=list)
    task: str = ""
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    finished: bool = False

    @property
    def play(self) -> PlayProgress | None:
        return self.plays[-1] if self.plays else None

    def task_counts(self) -> dict[str, int]:
        return {play.name: play.tasks for play in self.plays}

    def _host(self, data: Mapping[str, Any]) -> tuple[str, HostProgress]:
        name = str(data.get("host") or "?")
        return name, self.hosts.setdefault(name, HostProgress())

    def apply(self, event: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Update the state; return the lines worth printing in plain mode, as (style key, text)."""
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            name = str(data.get("name") or data.get("play") or "")
            self.plays.append(PlayProgress(name=name, expected=self.expected.get(name)))
            self.task = ""
            return [("play", f"PLAY {name}")]
        if kind == "playbook_on_task_start":
            play = self.play or PlayProgress(name="")
            if not self.plays:
                self.plays.append(play)
            play.tasks += 1
            self.task = task_label(data)
            count = f"{play.tasks}/{play.expected}" if play.expected and play.tasks <= play.expected else play.tasks
            return [("task", f"TASK [{count}] {self.task}")]
        if kind == "runner_on_start":
            _, host = self._host(data)
            host.task, host.state = task_label(data), "running"
            return []
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
            return self._host_result(kind, data)
        if kind == "playbook_on_stats":
            self.finished = True
        return []

    def _host_result(self, kind: str, data: Mapping[str, Any]) -> list[tuple[str, str]]:
        name, host = self._host(data)
        res = data.get("res") or {}
        if kind == "runner_on_ok":
            state = "changed" if res.get("changed") else "ok"
        elif kind == "runner_on_skipped":
            state = "skipped"
        elif kind == "runner_on_unreachable":
            state = "unreachable"
        else:
            state = "ok" if data.get("ignore_errors") else "failed"
        host.state = state
        setattr(host, state, getattr(host, state) + 1)
        if state in ("failed", "unreachable"):
            first = next(iter(str(res.get("msg") or "").strip().splitlines()), "")
            return [(state, f"  {state}: {name}" + (f": {first}" if first else ""))]
        if state == "changed":
            return [(state, f"  changed: {name}")]
        return []


class ProgressView(Protocol):
    def __enter__(self) -> ProgressView: ...

    def __exit__(self, *exc: object) -> None: ...

    def handle(self, event: dict[str, Any]) -> None: ...


class PlainProgress:
    """One line per play, task and notable host result: for logs and pipes."""

    def __init__(self, state: ProgressState, stream: TextIO) -> None:
        self.state = state
        self.stream = stream

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def handle(self, event: dict[str, Any]) -> None:
        for _, line in self.state.apply(event):
            print(line, file=self.stream, flush=True)


class RichProgress:
    """A live panel: the play, a bar over its tasks, the current task of every host."""

    def __init__(self, state: ProgressState, console: Console, title: str) -> None:
        self.state = state
        self.console = console
        self.title = title
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=8, transient=True)

    def __enter__(self) -> RichProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def handle(self, event: dict[str, Any]) -> None:
        for style, line in self.state.apply(event):
            if style in ("failed", "unreachable", "play"):  # kept above the live panel
                self.console.print(Text(line, style=_STYLES.get(style, "bold")))

    def render(self) -> RenderableType:
        play = self.state.play
        header = Text(f"{self.title}: ", style="bold")
        header.append(play.name if play else "starting ansible-playbook...")
        parts: list[RenderableType] = [header]
        if play:
            total = play.expected if play.expected and play.tasks <= play.expected else None
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                ProgressBar(total=total, completed=play.tasks, width=40),
                Text(f"{play.tasks}/{total} tasks" if total else f"{play.tasks} tasks"),
                Text(self.state.task, style="cyan", overflow="ellipsis", no_wrap=True),
            )
            parts.append(bar)
        if self.state.hosts:
            parts.append(self._hosts_table())
        return Group(*parts)

    def _hosts_table(self) -> Table:
        table = Table(box=None, padding=(0, 1), show_edge=False)
        for column in ("host", "current task", "ok", "changed", "failed", "unreachable", "skipped"):
            table.add_column(
                column, no_wrap=True, overflow="ellipsis", max_width=60 if column == "current task" else None
            )
        names = sorted(self.state.hosts)
        for name in names[:_MAX_HOST_ROWS]:
            host = self.state.hosts[name]
            table.add_row(
                Text(name, style=_STYLES.get(host.state, "")),
                host.task,
                str(host.ok),
                str(host.changed),
                Text(str(host.failed), style="bold red" if host.failed else ""),
                Text(str(host.unreachable), style="bold magenta" if host.unreachable else ""),
                str(host.skipped),
            )
        if len(names) > _MAX_HOST_ROWS:
            table.add_row(f"... {len(names) - _MAX_HOST_ROWS} more", "", "", "", "", "", "")
        return table


class NoProgress:
    """Keeps the state (for the task counts) and shows nothing."""

    def __init__(self, state: ProgressState) -> None:
        self.state = state

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def handle(self, event: dict[str, Any]) -> None:
        self.state.apply(event)


def make_view(state: ProgressState, stream: TextIO | None, title: str, quiet: bool = False) -> ProgressView:
    """Rich on a terminal, plain lines otherwise, nothing when quiet."""
    if quiet or stream is None:
        return NoProgress(state)
    if stream.isatty():
        return RichProgress(state, Console(file=stream), title)
    return PlainProgress(state, stream)


def _counts_file() -> Path:
    return state_dir() / "task-counts.json"


def load_expected(key: str) -> dict[str, int]:
    """Tasks each play of ``key`` (an action) ran last time."""
    entry = read_json(_counts_file()).get(key)
    return {str(k): int(v) for k, v in entry.items() if isinstance(v, int)} if isinstance(entry, dict) else {}


def save_expected(key: str, counts: Mapping[str, int]) -> None:
    if not counts:
        return
    try:
        data = read_json(_counts_file())
        data[key] = dict(counts)
        write_private_json(_counts_file(), data)
    except OSError as exc:  # a read-only home is no reason to fail a deploy
        print(f"mlflow-ansible: cannot record task counts: {exc}", file=sys.stderr)
