"""The Python API: one function per action, all running the collection's site playbook.

    import mlflow_ansible
    result = mlflow_ansible.deploy("inventory/gcp.yml", extra_vars={"tracking_server_workers": 4})
    print(result.ok, result.tracking_urls, result.failure)

Like kolla-ansible, every action is the same playbook (playbooks/site.yml) with the extra variable
``mlflow_ansible_action`` choosing what it imports; adding an action is one line in ACTIONS (which also
adds the CLI subcommand) and a playbooks/<action>.yml.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import yaml

from mlflow_ansible.collection import Collection, find_collection
from mlflow_ansible.env_vars import read_env_vars
from mlflow_ansible.errors import ValidationError
from mlflow_ansible.extra_vars import ExtraVars, parse_extra_vars
from mlflow_ansible.inventory import InventoryVars, check_sources, make_loader, quiet_ansible_display, read_inventory
from mlflow_ansible.result import ResultBuilder, RunResult
from mlflow_ansible.runner import EventHandler, PlaybookJob, PlaybookRunner
from mlflow_ansible.specs import Schema, deploy_schema, load_role_specs, testbed_schema
from mlflow_ansible.validation import Validator, is_template

ACTION_VAR = "mlflow_ansible_action"
HOSTS_VAR = "mlflow_ansible_hosts"
DEFAULT_HOSTS = "mlflow_servers"


@dataclass(frozen=True)
class ActionOption:
    """A subcommand's own flag, passed to the playbook as one site variable (``--to`` -> mlflow_ansible_upgrade_to)."""

    flag: str
    variable: str
    metavar: str
    help: str
    pattern: str  # the value must match (checked before launch, the error names the flag)
    switch: bool = False  # a flag without a value (true when given), never required


@dataclass(frozen=True)
class Action:
    """A subcommand: playbooks/<name>.yml, imported by playbooks/site.yml."""

    name: str
    help: str
    requires_inputs: bool  # the roles' required variables must be set (the action deploys)
    options: tuple[ActionOption, ...] = ()


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("deploy", "deploy or re-converge the MLflow tracking server", requires_inputs=True),
        Action("verify", "run the canary (a run, a metric, an artifact round trip) against each server", False),
        Action("status", "show the service state, health and MLflow version on each host", False),
        Action(
            "uninstall",
            "stop and remove the server, its venvs and configuration; the database and the bucket stay "
            "(-e mlflow_ansible_purge=true also removes the local data)",
            False,
        ),
        Action(
            "restart",
            "rolling restart behind the load balancer, mlflow_ansible_serial hosts at a time: drain, restart, "
            "health gate (/health and the canary), undrain; stops at the first failing host",
            False,
        ),
        Action(
            "rotate-kek",
            "new AI Gateway key-encryption passphrase: every server of a backend stopped, the stored provider "
            "keys re-wrapped with it, the servers started with it (a deploy otherwise)",
            True,
        ),
        Action(
            "upgrade",
            "upgrade MLflow host by host: new venv, database backup, migration once, health-gated switch; "
            "rolls back (restoring the backup) on failure",
            False,
            options=(
                ActionOption(
                    "--to",
                    "mlflow_ansible_upgrade_to",
                    "X.Y.Z",
                    "the MLflow release to upgrade to",
                    r"^\d+\.\d+\.\d+$",
                ),
            ),
        ),
        Action(
            "backup",
            "back up the tracking and auth databases and the local artifacts now (the backup unit, as its timer "
            "would): to tracking_server_backup_destination, with a manifest of sha256 sums, the oldest pruned",
            False,
        ),
        Action(
            "restore",
            "restore a backup (same or fresh VM): every check first (checksums, MLflow version, an empty target), "
            "then stop, restore the databases and artifacts, schema guard, start, canary",
            False,
            options=(
                ActionOption(
                    "--from",
                    "mlflow_ansible_restore_from",
                    "BACKUP",
                    "the backup: a label of the backup destination, latest, a gs:// or s3:// URL, or a path on the VM",
                    r"^\S+$",
                ),
                ActionOption(
                    "--force",
                    "mlflow_ansible_restore_force",
                    "",
                    "replace what the target's databases hold (refused otherwise)",
                    "",
                    switch=True,
                ),
            ),
        ),
    )
}

Inventory = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Any]


class RunOptions(TypedDict, total=False):
    """The options every action takes, named after ansible-playbook's flags."""

    extra_vars: Mapping[str, Any] | Sequence[str] | None  # a mapping, or -e strings (key=value, JSON, @file)
    limit: str | None  # -l
    check: bool  # -C
    diff: bool  # -D
    tags: str | Sequence[str] | None  # -t
    skip_tags: str | Sequence[str] | None
    verbosity: int  # -v count
    forks: int | None
    vault_password_file: str | os.PathLike[str] | None
    vault_password: str | None  # what --ask-vault-pass read; typed into the prompt from memory
    environ: Mapping[str, str] | None  # default os.environ: the allow-list and MLFLOW_ANSIBLE_VAR_* come from it
    on_event: EventHandler | None  # every ansible-runner event, for progress
    before_cleanup: Callable[[Path], None] | None  # sees the private data directory before it is removed
    accelerate: bool | None  # False: plain ansible-core (--no-accelerate); None: MLFLOW_ANSIBLE_ACCELERATE decides


def _join(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return ",".join(value) or None


def _inventory_sources(inventory: Inventory) -> list[str]:
    if isinstance(inventory, str | os.PathLike):
        return [os.fspath(inventory)]
    return [os.fspath(item) for item in inventory]  # type: ignore[union-attr]


class _Launcher:
    """Validates one playbook's inputs against a schema, then runs it through PlaybookRunner."""

    def __init__(
        self, collection: Collection, schema: Schema, playbook: str, label: str, hosts: str = DEFAULT_HOSTS
    ) -> None:
        self.collection = collection
        self.schema = schema
        self.playbook = playbook
        self.label = label
        self.hosts = hosts  # the plays' host pattern (overridable with mlflow_ansible_hosts)
        self.action_options: tuple[ActionOption, ...] = ()

    def _check_action_options(self, extra: ExtraVars) -> None:
        """Each of the action's own options is given and well formed, before anything runs."""
        for option in self.action_options:
            if option.switch:
                continue
            value = extra.values.get(option.variable, extra.passthrough_values.get(option.variable))
            if value is None or value == "":
                raise ValidationError(
                    f"{self.label} needs {option.flag} {option.metavar} ({option.help}; "
                    f"-e {option.variable}=... also works)"
                )
            if not is_template(value) and not re.match(option.pattern, str(value)):
                raise ValidationError(f"{option.flag} ({option.variable}): '{value}' is not {option.metavar}")

    def _read_inventory(
        self, inventory: Inventory, sources: list[str], loader: Any, extra: ExtraVars, limit: str | None
    ) -> InventoryVars:
        pattern = extra.values.get(HOSTS_VAR) or extra.passthrough_values.get(HOSTS_VAR) or self.hosts
        if is_template(pattern):
            return InventoryVars(skipped=f"{HOSTS_VAR} is a template")
        if isinstance(inventory, Mapping):
            with tempfile.TemporaryDirectory(prefix="mlflow-ansible-inventory-") as scratch:
                path = Path(scratch) / "hosts.yml"
                path.write_text(yaml.safe_dump(dict(inventory)), encoding="utf-8")
                return read_inventory([str(path)], loader, str(pattern), limit)
        return read_inventory(sources, loader, str(pattern), limit)

    def prepare(
        self,
        inventory: Inventory,
        *,
        require: bool,
        fixed_vars: Mapping[str, Any],
        reserved: Mapping[str, str],
        options: RunOptions,
    ) -> PlaybookJob:
        """Validate everything; the job to run."""
        environ = options.get("environ")
        environ = dict(os.environ if environ is None else environ)
        verbosity = int(options.get("verbosity") or 0)
        if verbosity < 0 or verbosity > 6:
            raise ValidationError(f"verbosity must be between 0 and 6, not {verbosity}")
        forks = options.get("forks")
        if forks is not None and int(forks) < 1:
            raise ValidationError(f"forks must be at least 1, not {forks}")
        with quiet_ansible_display():
            loader = make_loader(options.get("vault_password_file"), options.get("vault_password"))
            extra = parse_extra_vars(options.get("extra_vars"), loader)
        env_values, env_origins = read_env_vars(environ)
        sources = [] if isinstance(inventory, Mapping) else check_sources(_inventory_sources(inventory))
        self._check_action_options(extra)
        inventory_vars = self._read_inventory(inventory, sources, loader, extra, options.get("limit"))
        validated = Validator(self.schema, reserved).validate(
            extra, env_values, env_origins, inventory_vars, require=require
        )
        vault_file = options.get("vault_password_file")
        return PlaybookJob(
            playbook=self.collection.playbook(self.playbook),
            inventory=sources,
            generated_inventory=inventory if isinstance(inventory, Mapping) else None,
            extra_vars={**validated.extra_vars, **fixed_vars},
            secret_vars=validated.secret_vars,
            extra_var_files=validated.passthrough_files,
            limit=options.get("limit"),
            tags=_join(options.get("tags")),
            skip_tags=_join(options.get("skip_tags")),
            check=bool(options.get("check")),
            diff=bool(options.get("diff")),
            verbosity=verbosity,
            forks=forks,
            vault_password_file=Path(vault_file) if vault_file else None,
            vault_password=options.get("vault_password"),
        )

    def run(
        self,
        inventory: Inventory,
        *,
        require: bool,
        fixed_vars: Mapping[str, Any] | None = None,
        reserved: Mapping[str, str] | None = None,
        options: RunOptions,
    ) -> RunResult:
        job = self.prepare(
            inventory, require=require, fixed_vars=fixed_vars or {}, reserved=reserved or {}, options=options
        )
        builder = ResultBuilder(self.label)
        on_event = options.get("on_event")

        def handle(event: dict[str, Any]) -> None:
            builder.handle(event)
            if on_event is not None:
                on_event(event)

        runner = PlaybookRunner(
            self.collection,
            environ=options.get("environ"),
            before_cleanup=options.get("before_cleanup"),
            accelerate=options.get("accelerate"),
        )
        outcome = runner.run(job, on_event=handle)
        return builder.build(
            rc=outcome.rc,
            elapsed=outcome.elapsed,
            interrupted=outcome.interrupted,
            check=job.check,
            output=outcome.output,
            command=outcome.command,
            accelerator=outcome.accelerator,
        )


def _schemas(collection: Collection) -> tuple[Schema, Schema]:
    specs = load_role_specs(collection.roles_dir)
    return deploy_schema(specs), testbed_schema(specs)


def _action_launch(action: str) -> tuple[_Launcher, dict[str, Any]]:
    if action not in ACTIONS:
        raise ValidationError(f"unknown action '{action}': choose one of {', '.join(ACTIONS)}")
    collection = find_collection()
    schema, _ = _schemas(collection)
    launcher = _Launcher(collection, schema, playbook="site", label=action)
    launcher.action_options = ACTIONS[action].options
    arguments = {
        "require": ACTIONS[action].requires_inputs,
        "fixed_vars": {ACTION_VAR: action},
        "reserved": {ACTION_VAR: f"the subcommand sets it (use `{action}` or another subcommand)"},
    }
    return launcher, arguments


def prepare(action: str, inventory: Inventory, **options: Unpack[RunOptions]) -> PlaybookJob:
    """Validate everything ``run_action`` would run, and return the job without running it."""
    launcher, arguments = _action_launch(action)
    return launcher.prepare(inventory, options=options, **arguments)


def run_action(action: str, inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """Run one of ACTIONS against ``inventory`` (a path, several, or an inventory mapping)."""
    launcher, arguments = _action_launch(action)
    return launcher.run(inventory, options=options, **arguments)


def run_testbed(inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """Run playbooks/testbed.yml (the local Docker testbed), validated against the testbed role's spec."""
    collection = find_collection()
    _, schema = _schemas(collection)
    return _Launcher(collection, schema, playbook="testbed", label="testbed", hosts="localhost").run(
        inventory, require=False, options=options
    )


def deploy(inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """Deploy (or re-converge) the tracking server on the inventory's mlflow_servers."""
    return run_action("deploy", inventory, **options)


def verify(inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """Run the canary against every server; ``result.canary`` holds each host's report."""
    return run_action("verify", inventory, **options)


def status(inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """Service state, health and version per host; ``result.status`` holds them."""
    return run_action("status", inventory, **options)


def rotate_kek(inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """A new AI Gateway passphrase: the stored provider keys re-wrapped with it, every server restarted."""
    return run_action("rotate-kek", inventory, **options)


def _plus_site_vars(options: RunOptions, values: Mapping[str, Any]) -> list[str]:
    """The caller's ``extra_vars`` (taken out of ``options``: None, a mapping, a string or a list) as a list,
    with a subcommand's own site variables last."""
    given = options.pop("extra_vars", None)
    if given is None:
        extra: list[str] = []
    elif isinstance(given, Mapping):
        extra = [json.dumps(dict(given))]
    elif isinstance(given, str):
        extra = [given]
    else:
        extra = list(given)
    return [*extra, json.dumps(dict(values))]


def upgrade(inventory: Inventory, to: str, **options: Unpack[RunOptions]) -> RunResult:
    """Upgrade MLflow to ``to`` (X.Y.Z) host by host, with a backup first and a rollback on failure."""
    return run_action("upgrade", inventory, extra_vars=_plus_site_vars(options, {"mlflow_ansible_upgrade_to": to}),
                      **options)


def backup(inventory: Inventory, **options: Unpack[RunOptions]) -> RunResult:
    """Back up now (the backup unit); ``result.backups`` holds each host's label and location."""
    return run_action("backup", inventory, **options)


def restore(inventory: Inventory, source: str, force: bool = False, **options: Unpack[RunOptions]) -> RunResult:
    """Restore the backup ``source`` (a label, ``latest``, a gs:// or s3:// URL, a path on the VM); ``force``
    replaces what the target's databases hold."""
    chosen: dict[str, Any] = {"mlflow_ansible_restore_from": source}
    if force:
        chosen["mlflow_ansible_restore_force"] = True
    return run_action("restore", inventory, extra_vars=_plus_site_vars(options, chosen), **options)
