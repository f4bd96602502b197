"""The final report of a command: tables with rich (plain text when not on a terminal)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlflow_ansible.exit_codes import ExitCode
from mlflow_ansible.result import RunResult
from mlflow_ansible.sandbox import SandboxStatus

MEANINGS = {
    ExitCode.OK: "ok",
    ExitCode.ERROR: "error",
    ExitCode.HOST_FAILED: "a host failed",
    ExitCode.HOST_UNREACHABLE: "a host was unreachable",
    ExitCode.PARSE_ERROR: "parse error",
    ExitCode.BAD_OPTIONS: "bad options",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.UNEXPECTED: "unexpected error",
}


def meaning(exit_code: int) -> str:
    try:
        return MEANINGS[ExitCode(exit_code)]
    except ValueError:
        return "error"


def _count(value: int, style: str) -> Text:
    return Text(str(value), style=style if value else "dim")


def hosts_table(result: RunResult) -> Table:
    table = Table(title=f"{result.action}{' (check mode)' if result.check else ''}", title_justify="left")
    for column in ("host", "ok", "changed", "failed", "unreachable", "skipped", "rescued", "tracking URL"):
        table.add_column(column, justify="right" if column not in ("host", "tracking URL") else "left")
    for host, stats in sorted(result.hosts.items()):
        state = "red" if stats.failed else "magenta" if stats.unreachable else "yellow" if stats.changed else "green"
        table.add_row(
            Text(host, style=state),
            _count(stats.ok, "green"),
            _count(stats.changed, "yellow"),
            _count(stats.failed, "bold red"),
            _count(stats.unreachable, "bold magenta"),
            _count(stats.skipped, "cyan"),
            _count(stats.rescued, "cyan"),
            result.tracking_urls.get(host, ""),
        )
    return table


def status_table(status: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="tracking servers", title_justify="left")
    for column in ("host", "service", "healthy", "version", "url"):
        table.add_column(column)
    for host, entry in sorted(status.items()):
        healthy = bool(entry.get("healthy"))
        table.add_row(
            host,
            str(entry.get("service", "")),
            Text("yes" if healthy else "no", style="green" if healthy else "bold red"),
            str(entry.get("version", "")),
            str(entry.get("url", "")),
        )
    return table


def canary_lines(canary: dict[str, dict[str, Any]]) -> list[Text]:
    lines = []
    for host, report in sorted(canary.items()):
        if not report:
            continue
        if report.get("ok"):
            details = ", ".join(f"{key} {report[key]}" for key in ("version", "run_id") if report.get(key))
            if report.get("check_mode"):  # --check: /health and /version read, no run written
                details += ", check mode: health and version only"
            lines.append(Text(f"canary {host}: ok ({details})", style="green"))
        else:
            lines.append(Text(f"canary {host}: FAILED {report.get('error', json.dumps(report))}", style="bold red"))
    return lines


def backup_lines(result: RunResult) -> list[Text]:
    """Where each host's backup went (backup) and what each host restored (restore)."""
    lines = []
    for host, report in sorted((result.backups or {}).items()):
        removed = f", {len(report['removed'])} older removed" if report.get("removed") else ""
        lines.append(Text(f"backup {host}: {report.get('location', '?')}{removed}", style="green"))
    for host, report in sorted((result.restores or {}).items()):
        restored = f"{report.get('label', '?')} from {report.get('source', '?')}"
        lines.append(Text(f"restore {host}: {restored}", style="green"))
    return lines


def print_result(console: Console, result: RunResult) -> None:
    if result.hosts:
        console.print(hosts_table(result))
    if result.status:
        console.print(status_table(result.status))
    for line in canary_lines(result.canary or {}):
        console.print(line)
    for line in backup_lines(result):
        console.print(line)
    for failure in result.failures:
        console.print(Text(failure.summary(), style="bold red"))
    for warning in result.warnings:
        console.print(Text(warning, style="yellow"))
    if result.accelerator:
        console.print(Text(f"accelerator: {result.accelerator}", style="dim"))
        for note in result.accelerator_notes:
            note = f"  ansible-core's warning about it (--no-accelerate runs without): {note}"
            console.print(Text(note, style="dim"))
    if result.error:
        console.print(Text(result.error, style="bold red"))
    verdict = "done" if result.ok else "FAILED"
    style = "bold green" if result.ok else "bold red"
    code = f"exit {result.exit_code}: {meaning(result.exit_code)}"
    console.print(Text(f"{result.action} {verdict} in {result.elapsed:.0f} s ({code})"), style=style)


def print_sandbox_status(console: Console, status: SandboxStatus) -> None:
    if not status.containers:
        console.print(f"sandbox {status.name}: no containers (run `sandbox up`)")
        return
    table = Table(title=f"sandbox {status.name}", title_justify="left")
    for column in ("container", "state", "status", "image", "ports"):
        table.add_column(column)
    for container in status.containers:
        style = "green" if container.state == "running" else "bold red"
        table.add_row(
            container.name, Text(container.state, style=style), container.status, container.image, container.ports
        )
    console.print(table)
    if status.url:
        health = Text("healthy", style="bold green") if status.healthy else Text("not answering", style="bold red")
        line = Text(f"{status.url} ")
        line.append(health)
        if status.version:
            line.append(f" (MLflow {status.version})")
        console.print(line)
