"""Every role's defaults and meta/argument_specs.yml agree, key for key and value for value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(
    p.parent.parent for p in (Path(__file__).resolve().parents[2] / "roles").glob("*/meta/argument_specs.yml")
)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_match_argument_specs(role: Path):
    defaults = _load(role / "defaults" / "main.yml")
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert sorted(defaults) == sorted(k for k, v in options.items() if not v.get("required")), (
        f"{role.name}: defaults and argument_specs differ: "
        f"only in defaults {sorted(set(defaults) - set(options))}, "
        f"only in specs {sorted(set(options) - set(defaults))}"
    )
    for name, spec in options.items():
        assert name.startswith(f"{role.name}_"), f"{name} is not prefixed with {role.name}_"
        assert spec.get("description"), f"{name} has no description"
        assert spec.get("type"), f"{name} has no type"
        if spec.get("required"):
            assert "default" not in spec, f"{name} is required and has a default"
            continue
        assert spec.get("default") == defaults[name], (
            f"{name}: default {defaults[name]!r} != spec {spec.get('default')!r}"
        )
        if "choices" in spec:
            assert defaults[name] in spec["choices"], f"{name}: default not among the choices"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_internal_variables_are_prefixed(role: Path):
    internal = _load(role / "vars" / "main.yml") if (role / "vars" / "main.yml").exists() else {}
    for name in internal:
        assert name.startswith(f"_{role.name}_"), (
            f"{role.name}/vars/main.yml: {name} is not prefixed with _{role.name}_"
        )
