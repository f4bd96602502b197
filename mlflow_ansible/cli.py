"""The command line: ``python -m mlflow_ansible`` and ``mlflow-ansible`` (see docs/cli.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from rich.console import Console

from mlflow_ansible.accelerator import ENV as ACCELERATE_ENV
from mlflow_ansible.api import ACTIONS, Action, run_action
from mlflow_ansible.errors import MlflowAnsibleError, ValidationError
from mlflow_ansible.exit_codes import ExitCode
from mlflow_ansible.progress import ProgressState, ProgressView, load_expected, make_view, save_expected
from mlflow_ansible.runner import EventHandler
from mlflow_ansible.sandbox import SANDBOX_NAME, Sandbox
from mlflow_ansible.summary import print_result, print_sandbox_status

PROG = "mlflow-ansible"
EPILOG = (
    "exit codes: 0 ok, 1 error, 2 a host failed, 3 a host was unreachable, 4 inventory or parse error, "
    "5 bad options or variables, 99 interrupted, 250 unexpected error. "
    "Secrets: set MLFLOW_ANSIBLE_VAR_<variable> (e.g. MLFLOW_ANSIBLE_VAR_cloudsql_client_password) "
    "to pass a variable through the environment only."
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits with Ansible's "bad options" code (5) instead of 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.BAD_OPTIONS, f"{self.prog}: error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow-ansible")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress")


def _add_accelerate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-accelerate",
        dest="accelerate",
        action="store_const",
        const=False,
        default=None,
        help=f"run ansible-core's plain strategy, without Mitogen (or set {ACCELERATE_ENV}=0)",
    )


def _add_action_parser(subparsers: Any, action: Action) -> None:
    name, help_text = action.name, action.help
    parser = subparsers.add_parser(name, help=help_text, description=f"{help_text[0].upper()}{help_text[1:]}.")
    for option in action.options:
        if option.switch:
            parser.add_argument(option.flag, dest=option.variable, action="store_true", help=option.help)
        else:
            parser.add_argument(
                option.flag, dest=option.variable, required=True, metavar=option.metavar, help=option.help
            )
    parser.add_argument(
        "-i",
        "--inventory",
        action="append",
        required=True,
        metavar="PATH",
        help="inventory file, directory or host list (repeatable)",
    )
    parser.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="VARS",
        help="key=value pairs, a JSON/YAML mapping, or @file (repeatable; later ones win)",
    )
    parser.add_argument("-l", "--limit", metavar="SUBSET", help="further limit the hosts to a pattern")
    parser.add_argument("-C", "--check", action="store_true", help="don't change anything; predict some changes")
    parser.add_argument("-D", "--diff", action="store_true", help="show the differences in changed files")
    parser.add_argument("-t", "--tags", action="append", default=[], help="only run tasks with these tags")
    parser.add_argument("--skip-tags", action="append", default=[], help="skip tasks with these tags")
    parser.add_argument("-f", "--forks", type=int, metavar="N", help="parallel hosts")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="Ansible's verbosity (-vvv for more)")
    vault = parser.add_mutually_exclusive_group()
    vault.add_argument("--vault-password-file", "--vault-pass-file", metavar="PATH", help="vault password file")
    vault.add_argument("-J", "--ask-vault-pass", action="store_true", help="ask for the vault password")
    _add_output_options(parser)
    _add_accelerate_option(parser)
    parser.set_defaults(handler=_run_action_command, action=name)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Deploy and operate the MLflow tracking server with the mlflow_ansible.tracking collection.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for action in ACTIONS.values():
        _add_action_parser(subparsers, action)

    sandbox = subparsers.add_parser(
        "sandbox",
        help="a tracking server on this machine's Docker, deployed with the real roles",
        description="A local Docker testbed (PostgreSQL, a GCS emulator, a Debian 12 VM) with MLflow deployed into it.",
    )
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="SANDBOX_COMMAND")
    up = commands.add_parser("up", help="create the testbed, deploy, print the URL")
    up.add_argument(
        "--ca-bundle",
        metavar="PATH",
        help="CA bundle mounted into the VM and used by pip (behind a TLS-intercepting proxy)",
    )
    up.add_argument("--port", type=int, help="port of 127.0.0.1 for the server (default: a free one)")
    commands.add_parser("status", help="the containers and the health of the URL")
    commands.add_parser("down", help="remove everything the sandbox made")
    for sub in (up, commands.choices["status"], commands.choices["down"]):
        sub.add_argument("--name", default=SANDBOX_NAME, help=f"sandbox name, the containers' prefix ({SANDBOX_NAME})")
        _add_output_options(sub)
    for sub in (up, commands.choices["down"]):
        _add_accelerate_option(sub)
    sandbox.set_defaults(handler=_run_sandbox_command)

    token = subparsers.add_parser(
        "token",
        help="print a Google ID token for an IAP audience",
        description="Print a Google ID token for the IAP audience (the IAP OAuth client ID), fetched with google-auth.",
    )
    token.add_argument("--audience", help="IAP audience (default: $MLFLOW_ANSIBLE_IAP_AUDIENCE)")
    token.set_defaults(handler=_run_token_command)
    return parser


def _run_token_command(args: argparse.Namespace) -> int:
    import os

    from mlflow_ansible.iap_token import AUDIENCE_ENV, IapTokenSource, TokenError

    try:
        print(IapTokenSource(args.audience or os.environ.get(AUDIENCE_ENV, "")).token())
    except TokenError as exc:  # the provider's module stands alone: its error is no MlflowAnsibleError
        raise MlflowAnsibleError(str(exc)) from None
    return int(ExitCode.OK)


class _Output:
    """Where results (stdout) and progress (stdout, or stderr with --json) go."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        # Not a terminal (a pipe, a log): wide enough that tables never truncate names and URLs.
        self.console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200)
        self.progress_stream: TextIO = sys.stderr if self.json else sys.stdout

    def view(self, title: str, expected_key: str) -> tuple[ProgressView, ProgressState]:
        state = ProgressState(expected=load_expected(expected_key))
        return make_view(state, self.progress_stream, title, quiet=self.quiet), state

    def emit_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str), file=sys.stdout, flush=True)


def _ask_vault_password() -> str:
    try:
        return getpass.getpass("Vault password: ")
    except EOFError:
        raise ValidationError("--ask-vault-pass: no password was typed (or use --vault-password-file)") from None


def _counts_key(action: str, args: argparse.Namespace) -> str:
    return f"{action}{'-check' if getattr(args, 'check', False) else ''}"


def _run_action_command(args: argparse.Namespace) -> int:
    output = _Output(args)
    vault_password = _ask_vault_password() if args.ask_vault_pass else None
    key = _counts_key(args.action, args)
    view, state = output.view(f"{PROG} {args.action}", key)
    with view:
        # A switch not given is left out: -e may set its variable.
        options = {
            option.variable: getattr(args, option.variable)
            for option in ACTIONS[args.action].options
            if not option.switch or getattr(args, option.variable)
        }
        result = run_action(
            args.action,
            args.inventory,
            extra_vars=args.extra_vars + ([json.dumps(options)] if options else []),
            limit=args.limit,
            check=args.check,
            diff=args.diff,
            tags=args.tags or None,
            skip_tags=args.skip_tags or None,
            forks=args.forks,
            verbosity=args.verbose,
            vault_password_file=args.vault_password_file,
            vault_password=vault_password,
            on_event=view.handle,
            accelerate=args.accelerate,
        )
    if result.ok and not (args.tags or args.skip_tags or args.limit):
        save_expected(key, state.task_counts())
    if output.json:
        output.emit_json(result.to_dict())
    else:
        print_result(output.console, result)
    return result.exit_code


class _Phases:
    """One progress view per phase of a sandbox command (testbed, then deploy)."""

    def __init__(self, output: _Output, command: str) -> None:
        self.output = output
        self.command = command
        self.current: ProgressView | None = None
        self.states: dict[str, ProgressState] = {}

    def __call__(self, phase: str) -> EventHandler:
        self.close()
        view, state = self.output.view(f"{PROG} sandbox {self.command}: {phase}", f"sandbox-{self.command}-{phase}")
        self.states[phase] = state
        view.__enter__()
        self.current = view
        return view.handle

    def close(self) -> None:
        if self.current is not None:
            self.current.__exit__(None, None, None)
            self.current = None

    def save(self) -> None:
        for phase, state in self.states.items():
            save_expected(f"sandbox-{self.command}-{phase}", state.task_counts())


def _sandbox_up(sandbox: Sandbox, args: argparse.Namespace, output: _Output) -> int:
    phases = _Phases(output, "up")
    try:
        outcome = sandbox.up(ca_bundle=args.ca_bundle, port=args.port, events_for=phases)
    finally:
        phases.close()
    if outcome.ok:
        phases.save()
    if output.json:
        output.emit_json(outcome.to_dict())
    else:
        for result in (outcome.testbed, outcome.deploy):
            if result is not None and (not result.ok or result is outcome.deploy):
                print_result(output.console, result)
        if outcome.ok:
            # soft_wrap: a long path stays on its line (these lines are copied into a shell).
            lines = [
                f"MLflow is up at [bold]{outcome.state.url}[/bold] (UI and REST API)",
                f"  user admin, password in {outcome.admin_password_file} (0600)",
                f"  export MLFLOW_TRACKING_URI={outcome.state.url}",
                "  export MLFLOW_TRACKING_USERNAME=admin",
                f'  export MLFLOW_TRACKING_PASSWORD="$(cat {outcome.admin_password_file})"',
                "  export MLFLOW_TRACKING_INSECURE_TLS=true  # the certificate is self-signed",
            ]
            for line in lines:
                output.console.print(line, soft_wrap=True)
    if not outcome.testbed.ok:
        return outcome.testbed.exit_code
    if outcome.deploy is None or not outcome.deploy.ok:
        return outcome.deploy.exit_code if outcome.deploy else int(ExitCode.ERROR)
    if not outcome.healthy:
        print(f"{PROG}: error: the deploy succeeded but {outcome.state.url}/health does not answer", file=sys.stderr)
        return int(ExitCode.ERROR)
    return int(ExitCode.OK)


def _sandbox_status(sandbox: Sandbox, args: argparse.Namespace, output: _Output) -> int:
    status = sandbox.status()
    if output.json:
        output.emit_json(status.to_dict())
    else:
        print_sandbox_status(output.console, status)
    return int(ExitCode.OK if status.up else ExitCode.ERROR)


def _sandbox_down(sandbox: Sandbox, args: argparse.Namespace, output: _Output) -> int:
    phases = _Phases(output, "down")
    try:
        result = sandbox.down(events_for=phases)
    finally:
        phases.close()
    left = sandbox.containers()
    if output.json:
        output.emit_json({**result.to_dict(), "containers_left": [container.name for container in left]})
    else:
        if not result.ok:
            print_result(output.console, result)
        elif not left:
            output.console.print(f"sandbox {sandbox.name} removed")
    if left:
        names = ", ".join(container.name for container in left)
        print(f"{PROG}: error: containers of the sandbox are left: {names}", file=sys.stderr)
        return int(ExitCode.ERROR)
    return result.exit_code


_SANDBOX_COMMANDS: dict[str, Callable[[Sandbox, argparse.Namespace, _Output], int]] = {
    "up": _sandbox_up,
    "status": _sandbox_status,
    "down": _sandbox_down,
}


def _run_sandbox_command(args: argparse.Namespace) -> int:
    sandbox = Sandbox(args.name, accelerate=getattr(args, "accelerate", None))
    return _SANDBOX_COMMANDS[args.sandbox_command](sandbox, args, _Output(args))


def _report(exc: MlflowAnsibleError, as_json: bool) -> None:
    for problem in exc.problems:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
    if as_json:
        error = {"ok": False, "exit_code": int(exc.exit_code), "error": type(exc).__name__, "problems": exc.problems}
        print(json.dumps(error, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (docs/cli.md)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (exit 5)
        return int(exc.code or 0) if not isinstance(exc.code, str) else int(ExitCode.BAD_OPTIONS)
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.handler(args))
    except MlflowAnsibleError as exc:
        _report(exc, as_json)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: one line, the traceback with -vvv
        if getattr(args, "verbose", 0) >= 3:
            traceback.print_exc()
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {exc} (-vvv shows the traceback)", file=sys.stderr)
        return int(ExitCode.UNEXPECTED)
