"""``-e`` values parsed as ansible-playbook parses them: key=value pairs, inline JSON/YAML, or @file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mlflow_ansible.errors import ValidationError

_VAULT_TYPES = frozenset({"EncryptedString", "AnsibleVaultEncryptedUnicode"})


@dataclass
class ExtraVars:
    """The merged ``-e`` values, later ones winning as in ansible-playbook.

    ``values`` are plain Python values the wrapper may write to ansible-runner's env/extravars or pass
    through the environment. A vault-encrypted ``@file`` is never decrypted to disk: it stays on the
    command line (``passthrough_files``, applied before every other ``-e``) and its values, when a vault
    password was given, are only validated (``passthrough_values``).
    """

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    passthrough_files: list[Path] = field(default_factory=list)
    passthrough_values: dict[str, Any] = field(default_factory=dict)

    def origin(self, name: str) -> str:
        return self.origins.get(name, "-e")


def plain(value: Any) -> Any:
    """A copy without Ansible's data tags (plain dict, list, str, int, ...)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(item) for item in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def holds_vault_values(value: Any) -> bool:
    """True when ``value`` holds an inline ``!vault`` scalar somewhere."""
    if type(value).__name__ in _VAULT_TYPES:
        return True
    if isinstance(value, Mapping):
        return any(holds_vault_values(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(holds_vault_values(item) for item in value)
    return False


def _is_vault_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(b"$ANSIBLE_VAULT")) == b"$ANSIBLE_VAULT"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_file(argument: str, loader: Any, result: ExtraVars) -> None:
    from ansible.errors import AnsibleError

    path = Path(argument[1:]).expanduser()
    label = f"-e {argument}"
    if not argument[1:]:
        raise ValidationError("-e @ needs a file name after the @")
    if not path.is_file():
        raise ValidationError(f"{label}: no such file")
    try:
        vaulted = _is_vault_file(path)
        data = loader.load_from_file(str(path.resolve()), cache="none")
    except PermissionError:
        raise ValidationError(f"{label}: permission denied") from None
    except AnsibleError as exc:
        message = _first_line(exc)
        if "vault" in message.lower():
            message += " (give --vault-password-file or --ask-vault-pass)"
        raise ValidationError(f"{label}: {message}") from None
    if data is None:
        return
    if not isinstance(data, Mapping):
        kind = type(plain(data)).__name__
        raise ValidationError(f"{label}: the file must hold a mapping of variables, not a {kind}")
    if vaulted or holds_vault_values(data):
        result.passthrough_files.append(path.resolve())
        result.passthrough_values.update(data)
        for name in data:
            result.origins.setdefault(str(name), label)
        return
    _merge(result, data, label)


def _merge(result: ExtraVars, data: Mapping[str, Any], label: str) -> None:
    for name, value in data.items():
        result.values[str(name)] = plain(value)
        result.origins[str(name)] = label


def parse_extra_vars(arguments: Sequence[str] | Mapping[str, Any] | None, loader: Any) -> ExtraVars:
    """Parse ``-e`` arguments with Ansible's own parsers; raise ValidationError with one line per bad one."""
    from ansible.errors import AnsibleError
    from ansible.parsing.splitter import parse_kv

    result = ExtraVars()
    if arguments is None:
        return result
    if isinstance(arguments, Mapping):
        _merge(result, arguments, "extra_vars")
        return result
    if isinstance(arguments, str):
        arguments = [arguments]
    for argument in arguments:
        text = argument.strip()
        if not text:
            raise ValidationError("-e needs a value: key=value, a JSON/YAML mapping or @file")
        if text.startswith("@"):
            _load_file(text, loader, result)
            continue
        if text[0] in "[{":
            try:
                data = loader.load(text)
            except AnsibleError as exc:
                raise ValidationError(f"-e {text!r} is not valid JSON or YAML: {_first_line(exc)}") from None
            if not isinstance(data, Mapping):
                raise ValidationError(f"-e {text!r} must be a mapping of variables, not a list")
            _merge(result, data, "-e (JSON)")
            continue
        try:
            pairs = parse_kv(text)
        except AnsibleError as exc:
            raise ValidationError(f"-e {text!r}: {_first_line(exc)}") from None
        stray = pairs.pop("_raw_params", None)
        if stray is not None:
            raise ValidationError(f"-e {text!r}: {stray!r} is not key=value (use key=value, a JSON mapping or @file)")
        for name, value in pairs.items():
            if not name.isidentifier():
                raise ValidationError(f"-e {text!r}: {name!r} is not a valid variable name")
            result.values[name] = str(value)
            result.origins[name] = f"-e {name}=..."
    return result


def key_value_names(extra: ExtraVars) -> set[str]:
    """Names whose value came from a key=value pair (a string to convert to the declared type)."""
    return {name for name, origin in extra.origins.items() if origin.startswith("-e ") and origin.endswith("=...")}
