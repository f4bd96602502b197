"""Loads a collection module's file for its unit test, importing its module_utils the way Ansible does
(``ansible_collections.mlflow_ansible.tracking.plugins.module_utils``, through the repo's collections/ link)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[4]


def load_module(name: str) -> ModuleType:
    """plugins/modules/NAME.py, loaded as NAME_module."""
    collections = str(REPO / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    spec = importlib.util.spec_from_file_location(f"{name}_module", REPO / "plugins" / "modules" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
