"""Argument parsing and exit codes of the command line (no playbook runs here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_ansible import cli
from mlflow_ansible.errors import DockerUnavailableError
from mlflow_ansible.exit_codes import ExitCode
from mlflow_ansible.result import ResultBuilder

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_deploy_takes_ansible_playbooks_flags():
    args = parse(
        "deploy",
        "-i",
        "inventory/gcp.yml",
        "-i",
        "more.yml",
        "-e",
        "tracking_server_port=5001",
        "-e",
        "@vars.yml",
        "-e",
        '{"a": 1}',
        "-l",
        "vm1",
        "-C",
        "-D",
        "-t",
        "config",
        "-t",
        "service",
        "--skip-tags",
        "migrate",
        "-f",
        "5",
        "-vvv",
        "--vault-password-file",
        "pw.txt",
        "--json",
    )
    assert args.action == "deploy" and args.handler is cli._run_action_command
    assert args.inventory == ["inventory/gcp.yml", "more.yml"]
    assert args.extra_vars == ["tracking_server_port=5001", "@vars.yml", '{"a": 1}']
    assert (args.limit, args.check, args.diff, args.tags, args.skip_tags) == (
        "vm1",
        True,
        True,
        ["config", "service"],
        ["migrate"],
    )
    assert (args.forks, args.verbose, args.vault_password_file, args.json, args.ask_vault_pass) == (
        5,
        3,
        "pw.txt",
        True,
        False,
    )


@pytest.mark.parametrize("action", ["deploy", "verify", "status", "uninstall", "restart"])
def test_every_action_is_a_subcommand_with_defaults(action):
    args = parse(action, "--inventory", "hosts.yml")
    assert args.action == action
    assert (args.extra_vars, args.tags, args.limit, args.check, args.verbose, args.json) == (
        [],
        [],
        None,
        False,
        0,
        False,
    )


def test_sandbox_subcommands():
    up = parse("sandbox", "up", "--ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "--port", "5080")
    assert (up.sandbox_command, up.ca_bundle, up.port, up.name) == (
        "up",
        "/etc/ssl/certs/ca-certificates.crt",
        5080,
        "mlflow-sandbox",
    )
    assert parse("sandbox", "status", "--json").json
    assert parse("sandbox", "down", "--name", "other").name == "other"


@pytest.mark.parametrize(
    "argv",
    [
        ["deploy"],  # -i is required
        ["deploy", "-i", "h.yml", "--vault-password-file", "p", "--ask-vault-pass"],  # exclusive
        ["deploy", "-i", "h.yml", "-f", "many"],
        ["upgrade-everything"],
        ["sandbox"],
        ["sandbox", "up", "--port", "x"],
        [],
    ],
)
def test_bad_options_exit_5(argv, capsys):
    assert cli.main(argv) == ExitCode.BAD_OPTIONS
    assert "error:" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "exit codes: 0 ok" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0


def test_validation_error_exits_5_with_one_line(tmp_path, capsys):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    mlflow_servers:\n      hosts:\n        vm1:\n")
    code = cli.main(["deploy", "-i", str(inventory), "-e", "tracking_server_prot=1"])
    err = capsys.readouterr().err
    assert code == 5
    assert "mlflow-ansible: error: unknown variable 'tracking_server_prot'" in err
    assert "Traceback" not in err


def test_missing_inventory_exits_4_and_json_reports_it(capsys):
    code = cli.main(["status", "-i", "/nonexistent.yml", "--json"])
    captured = capsys.readouterr()
    assert code == 4
    report = json.loads(captured.out)
    assert report == {
        "ok": False,
        "exit_code": 4,
        "error": "InventoryError",
        "problems": ["inventory /nonexistent.yml: no such file or directory"],
    }
    assert "mlflow-ansible: error: inventory /nonexistent.yml" in captured.err


@pytest.mark.parametrize(
    ("rc", "interrupted", "code"),
    [
        (0, False, 0),
        (1, False, 1),
        (2, False, 2),
        (3, False, 3),
        (4, False, 4),
        (5, False, 5),
        (254, True, 99),
        (137, False, 1),
    ],
)
def test_result_exit_codes_follow_ansible(rc, interrupted, code):
    builder = ResultBuilder("deploy")
    builder.handle({"event": "playbook_on_stats", "event_data": {"ok": {"vm": 1}, "processed": {"vm": 1}}})
    assert builder.build(rc=rc, elapsed=0.0, interrupted=interrupted).exit_code == code


def test_action_result_code_is_the_exit_code(monkeypatch, capsys):
    result = ResultBuilder("deploy").build(rc=2, elapsed=1.0)
    monkeypatch.setattr(cli, "run_action", lambda *args, **kwargs: result)
    assert cli.main(["deploy", "-i", "h.yml", "--quiet"]) == 2
    assert "deploy FAILED in 1 s (exit 2: a host failed)" in capsys.readouterr().out


def test_interrupt_exits_99(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_action", interrupted)
    assert cli.main(["deploy", "-i", "h.yml"]) == 99
    assert "interrupted" in capsys.readouterr().err


def test_unexpected_exception_exits_250_without_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "run_action", broken)
    assert cli.main(["deploy", "-i", "h.yml"]) == 250
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError: kaboom" in err and "Traceback" not in err
    assert cli.main(["deploy", "-i", "h.yml", "-vvv"]) == 250
    assert "Traceback" in capsys.readouterr().err


def test_docker_missing_is_one_line_exit_1(monkeypatch, tmp_path, capsys, state_home):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker here
    assert cli.main(["sandbox", "status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "mlflow-ansible: error: Docker is not installed (no `docker` command on PATH): install Docker Engine "
        "(https://docs.docker.com/engine/install/, or run scripts/setup)"
    )


def test_docker_engine_down_is_one_line_exit_1(monkeypatch, tmp_path, capsys, state_home):
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert cli.main(["sandbox", "up"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("mlflow-ansible: error: Docker is installed but its engine is not running (Cannot connect")
    assert "sudo systemctl start docker" in err[0]


def test_docker_error_is_an_mlflow_ansible_error():
    assert DockerUnavailableError("x").exit_code == 1


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow_ansible", "deploy", "-i", "/nonexistent.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 4
    assert proc.stderr.strip() == "mlflow-ansible: error: inventory /nonexistent.yml: no such file or directory"


def test_upgrade_needs_to_and_passes_it_as_the_site_variable(monkeypatch, capsys):
    assert cli.main(["upgrade", "-i", "h.yml"]) == ExitCode.BAD_OPTIONS  # --to is required
    assert "--to" in capsys.readouterr().err
    seen = {}

    def fake_run_action(action, inventory, **options):
        seen.update(action=action, extra_vars=options["extra_vars"])
        builder = ResultBuilder(action)
        builder.handle({"event": "playbook_on_stats", "event_data": {"ok": {"vm": 1}, "processed": {"vm": 1}}})
        return builder.build(rc=0, elapsed=1.0)

    monkeypatch.setattr(cli, "run_action", fake_run_action)
    assert cli.main(["upgrade", "-i", "h.yml", "--to", "3.17.2", "-e", "mlflow_ansible_serial=2", "--quiet"]) == 0
    assert seen["action"] == "upgrade"
    assert seen["extra_vars"] == ["mlflow_ansible_serial=2", '{"mlflow_ansible_upgrade_to": "3.17.2"}']


def test_restore_needs_from_and_force_is_a_switch(monkeypatch, capsys):
    assert cli.main(["restore", "-i", "h.yml"]) == ExitCode.BAD_OPTIONS  # --from is required
    assert "--from" in capsys.readouterr().err
    seen = []

    def fake_run_action(action, inventory, **options):
        seen.append((action, options["extra_vars"]))
        builder = ResultBuilder(action)
        builder.handle({"event": "playbook_on_stats", "event_data": {"ok": {"vm": 1}, "processed": {"vm": 1}}})
        return builder.build(rc=0, elapsed=1.0)

    monkeypatch.setattr(cli, "run_action", fake_run_action)
    assert cli.main(["restore", "-i", "h.yml", "--from", "latest", "--quiet"]) == 0
    assert cli.main(["restore", "-i", "h.yml", "--from", "gs://b/p/x", "--force", "--quiet"]) == 0
    # Without --force the variable is left to -e (a later -e would otherwise be overridden by false).
    forced_by_e = ["-e", "mlflow_ansible_restore_force=true"]
    assert cli.main(["restore", "-i", "h.yml", "--from", "x", *forced_by_e, "--quiet"]) == 0
    assert seen == [
        ("restore", ['{"mlflow_ansible_restore_from": "latest"}']),
        ("restore", ['{"mlflow_ansible_restore_from": "gs://b/p/x", "mlflow_ansible_restore_force": true}']),
        ("restore", ["mlflow_ansible_restore_force=true", '{"mlflow_ansible_restore_from": "x"}']),
    ]


def test_restore_source_is_checked_before_launch(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    mlflow_servers:\n      hosts:\n        vm1:\n")
    from mlflow_ansible import api

    with pytest.raises(api.ValidationError, match="restore needs --from BACKUP"):
        api.prepare("restore", str(inventory))
    with pytest.raises(api.ValidationError, match="--from .*'a b' is not BACKUP"):
        api.prepare("restore", str(inventory), extra_vars=[json.dumps({"mlflow_ansible_restore_from": "a b"})])
    job = api.prepare("restore", str(inventory), extra_vars=["mlflow_ansible_restore_from=latest"])
    assert job.extra_vars["mlflow_ansible_action"] == "restore"
    assert job.extra_vars["mlflow_ansible_restore_from"] == "latest"
    assert api.prepare("backup", str(inventory)).extra_vars["mlflow_ansible_action"] == "backup"


def test_upgrade_target_is_checked_before_launch(tmp_path, capsys):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    mlflow_servers:\n      hosts:\n        vm1:\n")
    assert cli.main(["upgrade", "-i", str(inventory), "--to", "latest"]) == 5
    assert "--to (mlflow_ansible_upgrade_to): 'latest' is not X.Y.Z" in capsys.readouterr().err
    from mlflow_ansible import api

    with pytest.raises(api.ValidationError, match="upgrade needs --to X.Y.Z"):
        api.prepare("upgrade", str(inventory))
    job = api.prepare("upgrade", str(inventory), extra_vars=["mlflow_ansible_upgrade_to=3.17.2"])
    assert job.extra_vars["mlflow_ansible_upgrade_to"] == "3.17.2"
    assert job.extra_vars["mlflow_ansible_action"] == "upgrade"


def test_sandbox_up_prints_a_long_password_path_on_one_line(capsys):
    """The lines after `sandbox up` are copied into a shell: a long path must not wrap (it did at 200 columns)."""
    import argparse

    from mlflow_ansible import cli
    from mlflow_ansible.result import RunResult
    from mlflow_ansible.sandbox import SandboxState, SandboxUp

    path = "/tmp/" + "very-long-directory-name/" * 12 + "admin-password"

    class FakeSandbox:
        def up(self, ca_bundle, port, events_for):
            ok = RunResult(action="deploy", rc=0, exit_code=0)
            state = SandboxState(name="s", port=8443, db_password="x")
            return SandboxUp(state=state, testbed=ok, deploy=ok, healthy=True, admin_password_file=path)

    args = argparse.Namespace(ca_bundle=None, port=None, json=False, quiet=True)
    assert cli._sandbox_up(FakeSandbox(), args, cli._Output(args)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  user admin, password in {path} (0600)" in lines
    assert f'  export MLFLOW_TRACKING_PASSWORD="$(cat {path})"' in lines


def test_rotate_kek_is_the_site_playbook_with_its_action(tmp_path):
    """rotate-kek: the site playbook with its action (playbooks/rotate-kek.yml, a deploy the role tells by it)."""
    from mlflow_ansible import api

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    mlflow_servers:\n      hosts:\n        vm1:\n")
    job = api.prepare("rotate-kek", str(inventory))
    assert job.playbook.name == "site.yml"
    assert job.extra_vars == {"mlflow_ansible_action": "rotate-kek"}
    assert (job.playbook.parent / "rotate-kek.yml").is_file()
    with pytest.raises(api.ValidationError, match="mlflow_ansible_action"):
        api.prepare("rotate-kek", str(inventory), extra_vars=["mlflow_ansible_action=deploy"])


def test_the_sandbox_inventory_is_the_one_it_was_deployed_with(tmp_path):
    """Sandbox.inventory: what `sandbox up` deployed with, for actions against the sandbox; no secret in it."""
    from mlflow_ansible.errors import SandboxError
    from mlflow_ansible.sandbox import Sandbox, SandboxState

    sandbox = Sandbox("inv-test", {"XDG_STATE_HOME": str(tmp_path)})
    with pytest.raises(SandboxError, match="no sandbox inv-test is recorded"):
        sandbox.inventory()
    state = SandboxState(name="inv-test", port=8443, db_password="secret-db-password-0123", ca_bundle="",
                         created="2026-12-02T00:00:00+00:00")
    sandbox._save_state(state)
    inventory = sandbox.inventory()
    assert inventory == sandbox.inventory(state)
    group = inventory["all"]["children"]["mlflow_servers"]
    assert group["hosts"]["vm"]["ansible_host"] == "inv-test-vm"
    assert group["vars"]["tracking_server_public_url"] == "https://127.0.0.1:8443"
    assert "secret-db-password-0123" not in json.dumps(inventory)


def test_an_unreachable_host_is_named_so_not_a_parse_error(tmp_path, capsys, state_home):
    """ansible-core returns 4 for unreachable hosts as for a parse error: the label comes from the run's
    counters. A real run (ansible-runner, ansible-playbook) against a loopback port nothing listens on."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    mlflow_servers:\n      hosts:\n        down:\n"
        "          ansible_host: 127.0.0.1\n          ansible_port: 1\n          ansible_connection: ssh\n"
        "          ansible_ssh_common_args: -o ConnectTimeout=3 -o BatchMode=yes\n"
    )
    code = cli.main(["status", "-i", str(inventory), "--quiet"])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "status FAILED" in out and "(exit 3: a host was unreachable)" in out
    assert "down unreachable at [" in out and "parse error" not in out
