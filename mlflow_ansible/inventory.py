"""The inventory read in-process with Ansible's own InventoryManager and VariableManager, before launch.

Only static inventories (YAML, INI, host lists, directories of them) are read: an inventory plugin
configuration (``plugin: google.cloud.gcp_compute``) or an executable script would call out to the cloud,
so its hosts are left to ansible-playbook and only its existence is checked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_ansible.errors import InventoryError, ValidationError

_IGNORED_SUFFIXES = (".md", ".txt", ".rst", ".example", ".orig", ".retry", ".cfg", ".pyc", ".pyo", "~")
_VARS_DIRS = frozenset({"group_vars", "host_vars"})


@dataclass
class InventoryVars:
    """Variables of the hosts the play would run on, or why the inventory was not read."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: str = ""  # the reason the hosts were not read (a plugin inventory), empty when they were
    warnings: list[str] = field(default_factory=list)

    @property
    def static(self) -> bool:
        return not self.skipped


@contextlib.contextmanager
def quiet_ansible_display() -> Iterator[list[str]]:
    """Collect what Ansible would print as warnings while it works in this process."""
    from ansible.utils.display import Display

    display = Display()
    collected: list[str] = []
    saved = {name: display.__dict__.get(name) for name in ("warning", "error_as_warning", "deprecated")}

    def warning(msg: str, *args: Any, **kwargs: Any) -> None:
        collected.append(str(msg))

    def error_as_warning(msg: str | None, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        collected.append(f"{msg or ''} {exception}".strip())

    def deprecated(msg: str, *args: Any, **kwargs: Any) -> None:
        collected.append(str(msg))

    display.warning = warning  # type: ignore[method-assign]
    display.error_as_warning = error_as_warning  # type: ignore[method-assign]
    display.deprecated = deprecated  # type: ignore[method-assign]
    try:
        yield collected
    finally:
        for name, value in saved.items():
            if value is None:
                display.__dict__.pop(name, None)
            else:
                setattr(display, name, value)


def make_loader(vault_password_file: str | os.PathLike[str] | None = None, vault_password: str | None = None) -> Any:
    """Ansible's DataLoader, able to decrypt with the vault password given to the command."""
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import VaultSecret, get_file_vault_secret

    loader = DataLoader()
    secrets: list[tuple[str, Any]] = []
    if vault_password_file:
        path = Path(vault_password_file).expanduser()
        if not path.is_file():
            raise ValidationError(f"--vault-password-file {vault_password_file}: no such file")
        if not os.access(path, os.R_OK):
            raise ValidationError(f"--vault-password-file {vault_password_file}: permission denied")
        try:
            secret = get_file_vault_secret(filename=str(path), vault_id="default", loader=loader)
            secret.load()
        except AnsibleError as exc:
            raise ValidationError(f"--vault-password-file {vault_password_file}: {str(exc).splitlines()[0]}") from None
        secrets.append(("default", secret))
    if vault_password is not None:
        secrets.append(("default", VaultSecret(vault_password.encode("utf-8"))))
    if secrets:
        loader.set_vault_secrets(secrets)
    return loader


def _plugin_config(path: Path) -> str | None:
    """The plugin a YAML inventory file names (``plugin: ...``), if it is a plugin configuration."""
    if path.suffix not in (".yml", ".yaml"):
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # let Ansible report it when it parses the file
    if isinstance(data, dict) and isinstance(data.get("plugin"), str):
        return data["plugin"]
    return None


def _is_script(path: Path) -> bool:
    return os.access(path, os.X_OK) and path.suffix not in (".yml", ".yaml", ".ini", ".json", ".toml")


def dynamic_reason(source: str) -> str | None:
    """Why ``source`` is not a static inventory (a plugin configuration or a script), or None."""
    path = Path(source)
    candidates = [path]
    if path.is_dir():
        candidates = [
            entry
            for entry in sorted(path.iterdir())
            if entry.is_file() and not entry.name.startswith(".") and not entry.name.endswith(_IGNORED_SUFFIXES)
        ]
    for candidate in candidates:
        plugin = _plugin_config(candidate)
        if plugin:
            return f"{candidate} is a {plugin} inventory plugin configuration"
        if candidate.is_file() and _is_script(candidate):
            return f"{candidate} is an inventory script"
    return None


def check_sources(sources: Sequence[str]) -> list[str]:
    """The inventory sources, checked: paths must exist and be readable; host lists pass as they are."""
    checked: list[str] = []
    if not sources:
        raise InventoryError("no inventory given: pass -i PATH (for example -i inventory/gcp.yml)")
    for source in sources:
        if "," in source and not os.path.exists(source):
            checked.append(source)  # a host list: "vm1,vm2,"
            continue
        path = Path(source).expanduser()
        if not path.exists():
            raise InventoryError(f"inventory {source}: no such file or directory")
        if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
            raise InventoryError(f"inventory {source}: permission denied")
        checked.append(str(path.resolve()))
    return checked


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_inventory(sources: Sequence[str], loader: Any, pattern: str, limit: str | None = None) -> InventoryVars:
    """The variables of every host matching ``pattern`` (and ``limit``), as the play would see them.

    Raises InventoryError when a static source cannot be parsed or no host matches.
    """
    for source in sources:
        reason = dynamic_reason(source) if os.path.exists(source) else None
        if reason:
            return InventoryVars(skipped=reason)

    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.vars.manager import VariableManager

    unparsed: list[str] = []

    class _Inventory(InventoryManager):  # records the top-level sources no plugin could parse
        _depth = 0

        def parse_source(self, source: str, cache: bool = False) -> bool:
            self._depth += 1
            try:
                parsed = super().parse_source(source, cache=cache)
            finally:
                self._depth -= 1
            if not parsed and self._depth == 0:
                unparsed.append(source)
            return parsed

    with quiet_ansible_display() as warnings:
        try:
            inventory = _Inventory(loader=loader, sources=list(sources))
            if unparsed:
                detail = next((w for w in warnings if "Failed to parse" in w or "YAML" in w), "")
                raise InventoryError(
                    f"inventory {unparsed[0]} cannot be parsed" + (f": {_flatten(detail)}" if detail else "")
                )
            if limit:
                inventory.subset(limit)
            hosts = inventory.get_hosts(pattern)
            if not hosts:
                where = f"'{pattern}'" + (f" with --limit {limit}" if limit else "")
                raise InventoryError(f"no host of the inventory matches {where}: check -i and the mlflow_servers group")
            variables = VariableManager(loader=loader, inventory=inventory)
            found = {host.name: dict(variables.get_vars(host=host, include_hostvars=False)) for host in hosts}
        except AnsibleError as exc:
            message = _first_line(exc)
            if "vault" in message.lower():
                message += " (give --vault-password-file or --ask-vault-pass)"
            raise InventoryError(f"inventory: {message}") from None
    return InventoryVars(hosts=found, warnings=list(warnings))


def _flatten(text: str) -> str:
    return " ".join(text.split())[:300]
