"""Shared fixtures of the unit tests: the real argument specs of this checkout, an Ansible loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_ansible.collection import find_collection
from mlflow_ansible.inventory import make_loader
from mlflow_ansible.specs import Schema, deploy_schema, load_role_specs, testbed_schema


@pytest.fixture(scope="session")
def role_specs():
    return load_role_specs(find_collection().roles_dir)


@pytest.fixture(scope="session")
def schema(role_specs) -> Schema:
    return deploy_schema(role_specs)


@pytest.fixture(scope="session")
def bed_schema(role_specs) -> Schema:
    return testbed_schema(role_specs)


@pytest.fixture
def loader():
    return make_loader()


@pytest.fixture
def state_home(tmp_path, monkeypatch) -> Path:
    """A private XDG_STATE_HOME, so tests never touch ~/.local/state."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home
