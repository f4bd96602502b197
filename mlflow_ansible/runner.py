"""The one owner of ansible-runner: a private data directory per run, a clean environment, events out.

Learned from ansible-navigator's runner/base.py: build ansible-runner's RunnerConfig ourselves, so
nothing we did not decide reaches the child process or the disk:

* the private data directory is a fresh ``mkdtemp`` (0700), removed after the run, even on errors;
* the child's environment is an allow-list of ours plus the wrapper's ANSIBLE_* settings and the
  secrets (MLFLOW_ANSIBLE_VAR_*), never written to disk: ``suppress_env_files``, no env/envvars, and
  ansible-runner's ``artifacts/<ident>/command`` file (argv, cwd *and environment*) is a FIFO read into
  memory, where only argv and cwd are kept;
* no job_events files (the event handler keeps the events in memory), no stdout file, facts in memory;
* ansible-playbook's argv holds paths and flags only: non-secret extra vars go to env/extravars (0600),
  vault passwords are typed into its prompt by pexpect from memory (``passwords``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from mlflow_ansible.accelerator import Accelerator, detect
from mlflow_ansible.child_env import restrict, wrapper_settings
from mlflow_ansible.collection import Collection, find_collection
from mlflow_ansible.env_vars import child_env
from mlflow_ansible.errors import RunnerError

EventHandler = Callable[[dict[str, Any]], None]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_VAULT_PROMPT = r"^Vault password[^:\n]*:\s*?$"
_OUTPUT_LINES = 80


@dataclass
class PlaybookJob:
    """One ansible-playbook invocation."""

    playbook: Path
    inventory: Sequence[str] = ()
    generated_inventory: Mapping[str, Any] | None = None  # written to <private_data_dir>/inventory/hosts.yml
    extra_vars: Mapping[str, Any] = field(default_factory=dict)  # non-secret: env/extravars
    secret_vars: Mapping[str, Any] = field(default_factory=dict)  # the child's environment only
    extra_var_files: Sequence[Path] = ()  # -e @file passed through (vault-encrypted ones)
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    forks: int | None = None
    vault_password_file: Path | None = None
    vault_password: str | None = None  # typed into the --ask-vault-pass prompt


@dataclass
class RunnerOutcome:
    """How the ansible-playbook process ended."""

    rc: int
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    interrupted: bool
    command: list[str]
    cwd: str
    elapsed: float
    output: list[str]  # the last lines ansible-playbook printed
    accelerator: Accelerator | None = None  # what the run used (mlflow_ansible.accelerator)


class _CommandCapture:
    """Receives ansible-runner's ``artifacts/<ident>/command`` through a FIFO instead of a file.

    ansible-runner writes the child's command line, cwd and complete environment there before it starts
    the child; the environment carries the secrets, so it must not reach the disk. A FIFO stores nothing:
    a thread reads it and keeps argv and cwd.
    """

    def __init__(self, artifact_dir: Path) -> None:
        self.path = artifact_dir / "command"
        self.command: list[str] = []
        self.cwd = ""
        os.mkfifo(self.path, 0o600)
        self._thread = threading.Thread(target=self._read, name="mlflow-ansible-command", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.path, encoding="utf-8") as fifo:  # blocks until ansible-runner opens it to write
            raw = fifo.read()
        with contextlib.suppress(ValueError, AttributeError):
            payload = json.loads(raw)
            self.command = [str(part) for part in payload.get("command") or []]
            self.cwd = str(payload.get("cwd") or "")

    def close(self) -> None:
        if self._thread.is_alive():  # ansible-runner never got to write: release the reader
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.path.unlink()


class _Interrupt:
    """Ctrl-C handling while ansible-playbook runs in its own session (its pty gets no SIGINT from ours).

    The first Ctrl-C forwards SIGINT to ansible-playbook, which stops its workers and exits with 99; if it
    has not stopped after ``grace`` seconds, or on a second Ctrl-C, the cancel callback tells ansible-runner
    to kill its process group; a third one raises KeyboardInterrupt here.
    """

    def __init__(self, grace: float = 20.0) -> None:
        self.grace = grace
        self.pid: int | None = None  # ansible-playbook's, from the first event
        self.requested = False
        self.forced = False
        self._count = 0
        self._at = 0.0

    def seen(self, event: dict[str, Any]) -> None:
        if self.pid is None and isinstance(event.get("pid"), int):
            self.pid = event["pid"]

    def __call__(self) -> bool:
        """ansible-runner's cancel callback: True kills the child's process group."""
        return self.forced or (self.requested and time.monotonic() - self._at > self.grace)

    def interrupt(self) -> None:
        self._count += 1
        if self._count == 1:
            self.requested, self._at = True, time.monotonic()
            if self.pid is None:
                self.forced = True
                return
            try:
                os.kill(self.pid, signal.SIGINT)
            except ProcessLookupError:
                self.forced = True
        elif self._count == 2:
            self.forced = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.interrupt()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _kill_process_group(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


class PlaybookRunner:
    """Runs playbooks of the collection through ansible-runner, feeding every event to a handler.

    ``environ`` is the caller's environment (default: os.environ), filtered by the allow-list.
    ``before_cleanup`` is called with the private data directory just before it is removed (tests use
    it to check that no secret reached the disk). ``accelerate`` is the --no-accelerate flag (False), or
    None to follow MLFLOW_ANSIBLE_ACCELERATE in ``environ``; the accelerator runs when Mitogen supports
    this ansible-core.
    """

    def __init__(
        self,
        collection: Collection | None = None,
        environ: Mapping[str, str] | None = None,
        before_cleanup: Callable[[Path], None] | None = None,
        accelerate: bool | None = None,
    ) -> None:
        self.collection = collection or find_collection()
        self.environ = dict(os.environ if environ is None else environ)
        self.before_cleanup = before_cleanup
        self.accelerator = detect(self.environ, accelerate)

    def _cmdline(self, job: PlaybookJob) -> list[str]:
        args: list[str] = []
        for path in job.extra_var_files:
            args += ["-e", f"@{path}"]
        if job.check:
            args.append("--check")
        if job.diff:
            args.append("--diff")
        if job.vault_password_file:
            args += ["--vault-password-file", str(Path(job.vault_password_file).expanduser().resolve())]
        if job.vault_password is not None:
            args.append("--ask-vault-pass")
        return args

    def _config(self, job: PlaybookJob, private_data_dir: Path) -> Any:
        from ansible_runner.config.runner import RunnerConfig

        inventory = list(job.inventory)
        if job.generated_inventory is not None:
            generated = private_data_dir / "inventory" / "hosts.yml"
            _write_private(generated, yaml.safe_dump(dict(job.generated_inventory), sort_keys=False))
            inventory.append(str(generated))
        if job.extra_vars:
            _write_private(private_data_dir / "env" / "extravars", json.dumps(dict(job.extra_vars), default=str))
        cmdline = self._cmdline(job)
        config = RunnerConfig(
            private_data_dir=str(private_data_dir),
            playbook=str(job.playbook),
            inventory=inventory or None,
            limit=job.limit,
            tags=job.tags,
            skip_tags=job.skip_tags,
            verbosity=job.verbosity or None,
            forks=job.forks,
            cmdline=shlex.join(cmdline) if cmdline else None,
            passwords={_VAULT_PROMPT: job.vault_password} if job.vault_password is not None else None,
            ident=uuid.uuid4().hex,
            quiet=True,
            suppress_env_files=True,
            fact_cache_type="memory",
        )
        config.prepare()
        # Set after prepare(): ansible-runner drops the `settings` argument when env/settings is absent.
        config.suppress_output_file = True  # no artifacts/<ident>/stdout and stderr files
        config.pexpect_timeout = 0.5  # how often the cancel callback (Ctrl-C) is polled
        env = restrict(config.env, seeded_from=os.environ, caller=self.environ)
        env.update(wrapper_settings(self.environ, self.collection))
        env.update(self.accelerator.env())
        env.update(child_env(job.secret_vars))
        config.env = env
        config.cwd = os.getcwd()  # relative paths in -e values and ansible.cfg resolve as with ansible-playbook
        return config

    def run(self, job: PlaybookJob, on_event: EventHandler | None = None) -> RunnerOutcome:
        from ansible_runner.runner import Runner

        output: deque[str] = deque(maxlen=_OUTPUT_LINES)
        interrupt = _Interrupt()
        handler_errors: list[Exception] = []

        def handle(event: dict[str, Any]) -> bool:
            interrupt.seen(event)
            text = _ANSI.sub("", event.get("stdout") or "")
            output.extend(line for line in text.splitlines() if line.strip())
            if on_event is not None and not handler_errors:
                try:
                    on_event(event)
                except Exception as exc:  # never leave ansible-playbook orphaned: report it after the run
                    handler_errors.append(exc)
            return False  # keep events in memory: no job_events files

        started = time.monotonic()
        private_data_dir = Path(tempfile.mkdtemp(prefix="mlflow-ansible-"))
        capture: _CommandCapture | None = None
        try:
            config = self._config(job, private_data_dir)
            capture = _CommandCapture(Path(config.artifact_dir))
            runner = Runner(config, cancel_callback=interrupt, event_handler=handle, remove_partials=True)
            with interrupt.installed():
                status, rc = runner.run()
        except KeyboardInterrupt:
            _kill_process_group(interrupt.pid)
            raise
        except Exception as exc:
            raise RunnerError(f"ansible-runner failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if capture is not None:
                capture.close()
            try:
                if self.before_cleanup is not None:
                    self.before_cleanup(private_data_dir)
            finally:
                shutil.rmtree(private_data_dir, ignore_errors=True)
        if handler_errors:
            error = handler_errors[0]
            raise RunnerError(f"the event handler failed: {type(error).__name__}: {error}") from error
        return RunnerOutcome(
            rc=int(rc) if rc is not None else 250,
            status=str(status),
            interrupted=interrupt.requested or status == "canceled",
            command=capture.command if capture else [],
            cwd=capture.cwd if capture else "",
            elapsed=time.monotonic() - started,
            output=list(output),
            accelerator=self.accelerator,
        )
