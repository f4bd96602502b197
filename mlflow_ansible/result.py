"""The outcome of an action (deploy, verify, status, ...), built from ansible-runner's events."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from mlflow_ansible.accelerator import Accelerator, is_strategy_deprecation
from mlflow_ansible.exit_codes import ExitCode

_ERROR_LINE = re.compile(r"^(ERROR!|\[ERROR\]:)\s*")
_WARNING_LINE = re.compile(r"^\[(DEPRECATION )?WARNING\]:\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MESSAGE_LIMIT = 4000
_MAX_WARNINGS = 20


@dataclass
class HostStats:
    """PLAY RECAP counters of one host."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class TaskFailure:
    """A task that failed on a host (or a host that could not be reached), with Ansible's message."""

    host: str
    task: str
    message: str
    role: str = ""
    action: str = ""
    unreachable: bool = False

    def summary(self) -> str:
        where = f"{self.role} : {self.task}" if self.role else self.task
        kind = "unreachable" if self.unreachable else "failed"
        return f"{self.host} {kind} at [{where}]: {self.message}"


@dataclass
class RunResult:
    """What one action did: per-host counters, URLs, failures and what the play reported."""

    action: str
    rc: int  # ansible-playbook's return code
    exit_code: int  # the CLI's (docs/cli.md): rc, or 99 when interrupted
    hosts: dict[str, HostStats] = field(default_factory=dict)
    tracking_urls: dict[str, str] = field(default_factory=dict)
    failures: list[TaskFailure] = field(default_factory=list)
    elapsed: float = 0.0
    status: dict[str, dict[str, Any]] | None = None  # mlflow_status, per host (status)
    canary: dict[str, dict[str, Any]] | None = None  # mlflow_canary, per host (deploy, verify)
    backups: dict[str, dict[str, Any]] | None = None  # mlflow_backup, per host (backup): label, location, manifest
    restores: dict[str, dict[str, Any]] | None = None  # mlflow_restore, per host (restore): source, label
    check: bool = False
    interrupted: bool = False
    error: str = ""  # an error not tied to a task (a playbook syntax error, an inventory without hosts...)
    warnings: list[str] = field(default_factory=list)  # Ansible's [WARNING] lines
    command: list[str] = field(default_factory=list)  # ansible-playbook's argv (paths and flags only)
    accelerator: str = ""  # "mitogen 0.3.54", or "off (why)"
    accelerator_notes: list[str] = field(default_factory=list)  # warnings the accelerator itself causes

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    @property
    def changed(self) -> int:
        return sum(stats.changed for stats in self.hosts.values())

    @property
    def failed(self) -> int:
        return sum(stats.failed for stats in self.hosts.values())

    @property
    def unreachable(self) -> int:
        return sum(stats.unreachable for stats in self.hosts.values())

    @property
    def failure(self) -> TaskFailure | None:
        """The first failing task, if any."""
        return self.failures[0] if self.failures else None

    @property
    def tracking_url(self) -> str | None:
        return next(iter(self.tracking_urls.values()), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            ok=self.ok,
            changed=self.changed,
            failed=self.failed,
            unreachable=self.unreachable,
            tracking_url=self.tracking_url,
            elapsed=round(self.elapsed, 3),
        )
        return data


def _tail(text: str, lines: int) -> str:
    kept = [line for line in str(text).strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def failure_message(res: dict[str, Any]) -> str:
    """A readable message from a failed task's result: msg, the command's stderr, the failing loop item."""
    if res.get("censored"):
        return str(res["censored"])
    message = str(res.get("msg") or "").strip()
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            label = item.get("_ansible_item_label", item.get("item"))
            inner = failure_message(item)
            message = f"{message} (item {label}: {inner})" if message else f"item {label}: {inner}"
            break
    stderr = _tail(res.get("stderr") or "", 15)
    if stderr and stderr not in message:
        message = f"{message}\n{stderr}" if message else stderr
    elif not message and res.get("stdout"):
        message = _tail(res["stdout"], 15)
    if not message and res.get("rc") not in (None, 0):
        message = f"exit status {res['rc']}"
    return (message or "failed (no message)")[:_MESSAGE_LIMIT]


def _error_from_output(lines: list[str]) -> str:
    """The first ERROR paragraph ansible-playbook printed outside a task (a syntax error, a missing file)."""
    for index, line in enumerate(lines):
        if _ERROR_LINE.match(line.strip()):
            text = [_ERROR_LINE.sub("", line.strip())]
            for follow in lines[index + 1 : index + 8]:
                if _ERROR_LINE.match(follow.strip()) or follow.startswith(("PLAY", "TASK", "fatal:")):
                    break
                text.append(follow.rstrip())
            return "\n".join(text).strip()[:_MESSAGE_LIMIT]
    return ""


class ResultBuilder:
    """Consumes ansible-runner events (dicts) and builds the RunResult at the end."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.failures: dict[str, TaskFailure] = {}  # the last failure of each host
        self.hosts: dict[str, HostStats] = {}
        self.artifact_data: dict[str, Any] = {}
        self.saw_stats = False
        self.warnings: list[str] = []

    def _warnings(self, stdout: str) -> None:
        for line in _ANSI.sub("", stdout).splitlines():
            line = line.strip()
            if _WARNING_LINE.match(line) and line not in self.warnings and len(self.warnings) < _MAX_WARNINGS:
                self.warnings.append(line)

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind in ("verbose", "warning", "deprecated"):
            self._warnings(str(event.get("stdout") or ""))
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            self._failure(data, unreachable=False)
        elif kind == "runner_on_unreachable":
            self._failure(data, unreachable=True)
        elif kind == "playbook_on_stats":
            self._stats(data)

    def _failure(self, data: dict[str, Any], unreachable: bool) -> None:
        host = str(data.get("host") or "?")
        self.failures[host] = TaskFailure(
            host=host,
            task=str(data.get("task") or ""),
            role=str(data.get("role") or ""),
            action=str(data.get("task_action") or ""),
            message=failure_message(data.get("res") or {}),
            unreachable=unreachable,
        )

    def _stats(self, data: dict[str, Any]) -> None:
        self.saw_stats = True
        columns = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        names: set[str] = set(data.get("processed") or {})
        for key in columns:
            names.update(data.get(key) or {})
        for host in sorted(names):
            stats = self.hosts.setdefault(host, HostStats())
            for key, attribute in columns.items():
                setattr(stats, attribute, int((data.get(key) or {}).get(host, 0)))
        self.artifact_data = dict(data.get("artifact_data") or {})

    def build(
        self,
        rc: int,
        elapsed: float,
        interrupted: bool = False,
        check: bool = False,
        output: list[str] | None = None,
        command: list[str] | None = None,
        accelerator: Accelerator | None = None,
    ) -> RunResult:
        # A failure later rescued (the host's final counters show no failure) did not fail the host.
        failures = [
            failure
            for host, failure in self.failures.items()
            if not self.saw_stats
            or (self.hosts.get(host) and (self.hosts[host].failed or self.hosts[host].unreachable))
        ]
        artifact = self.artifact_data
        error = ""
        if rc not in (0, 2, 3) and not failures and not interrupted:
            error = _error_from_output(output or []) or "\n".join((output or [])[-5:])
        exit_code = (
            int(ExitCode.INTERRUPTED)
            if interrupted
            else ExitCode.from_ansible(
                rc,
                failed_hosts=sum(1 for stats in self.hosts.values() if stats.failed),
                unreachable_hosts=sum(1 for stats in self.hosts.values() if stats.unreachable),
            )
        )
        if rc == 0 and not interrupted and not self.hosts:
            # ansible-playbook succeeds when no host matches (an inventory plugin that failed to parse, a
            # pattern that matches nothing); a deploy that ran nowhere is not a success.
            error, exit_code = self._no_hosts()
        warnings, notes = self._split_warnings(accelerator)
        return RunResult(
            action=self.action,
            rc=rc,
            exit_code=exit_code,
            hosts=self.hosts,
            tracking_urls={str(k): str(v) for k, v in (artifact.get("mlflow_tracking_urls") or {}).items()},
            failures=failures,
            elapsed=elapsed,
            status=artifact.get("mlflow_status"),
            canary=artifact.get("mlflow_canary"),
            backups=artifact.get("mlflow_backup"),
            restores=artifact.get("mlflow_restore"),
            check=check,
            interrupted=interrupted,
            error=error,
            warnings=warnings,
            command=list(command or []),
            accelerator=accelerator.describe() if accelerator else "",
            accelerator_notes=notes,
        )

    def _split_warnings(self, accelerator: Accelerator | None) -> tuple[list[str], list[str]]:
        """The play's warnings, and the ones the accelerator causes (ansible-core's strategy deprecation).

        The "deprecation warnings can be disabled" hint goes with the accelerator's only when no other
        deprecation warning was printed.
        """
        if accelerator is None or not accelerator.enabled:
            return list(self.warnings), []
        ours = [line for line in self.warnings if is_strategy_deprecation(line)]
        if any(line.startswith("[DEPRECATION WARNING]") and line not in ours for line in self.warnings):
            ours = [line for line in ours if line.startswith("[DEPRECATION WARNING]")]  # the hint stays
        rest = [line for line in self.warnings if line not in ours]
        return rest, [_WARNING_LINE.sub("", line) for line in ours]

    def _no_hosts(self) -> tuple[str, int]:
        reasons = [_WARNING_LINE.sub("", warning) for warning in self.warnings]
        unparsed = any("Unable to parse" in reason for reason in reasons)
        cause = next((r for r in reasons if "with 'auto' plugin" in r), None) or next(
            (r for r in reasons if "parse" in r), ""
        )
        message = "no host matched the plays' hosts: nothing ran"
        if cause:
            message += f" ({cause})"
        return message, int(ExitCode.PARSE_ERROR if unparsed else ExitCode.ERROR)
