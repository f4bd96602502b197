"""Where the mlflow_ansible.tracking collection is: this checkout, or the one installed beside the package."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mlflow_ansible.errors import MlflowAnsibleError

NAMESPACE = "mlflow_ansible"
NAME = "tracking"
FQCN = f"{NAMESPACE}.{NAME}"
_RELATIVE = Path("ansible_collections") / NAMESPACE / NAME


@dataclass(frozen=True)
class Collection:
    """The collection's files (``root``) and the directory to put on ANSIBLE_COLLECTIONS_PATH."""

    root: Path
    collections_path: Path
    from_checkout: bool

    def playbook(self, name: str) -> Path:
        return self.root / "playbooks" / f"{name}.yml"

    @property
    def roles_dir(self) -> Path:
        return self.root / "roles"


def _checkout() -> Collection | None:
    """The checkout this package was imported from: <repo>/mlflow_ansible with <repo>/galaxy.yml beside it."""
    repo = Path(__file__).resolve().parent.parent
    if (repo / "galaxy.yml").is_file() and (repo / "roles").is_dir():
        return Collection(root=repo, collections_path=repo / "collections", from_checkout=True)
    return None


def _installed(search_path: list[str]) -> Collection | None:
    """The collection under <site-packages>/ansible_collections/mlflow_ansible/tracking, as `pip install` puts it."""
    for entry in search_path:
        base = Path(entry or ".")
        if (base / _RELATIVE / "galaxy.yml").is_file():
            return Collection(root=base / _RELATIVE, collections_path=base, from_checkout=False)
    return None


@cache
def find_collection() -> Collection:
    """The checkout's collection when running from a checkout, else the installed one."""
    found = _checkout() or _installed(sys.path)
    if found is None:
        raise MlflowAnsibleError(
            f"the {FQCN} collection is not installed beside the mlflow_ansible package: "
            "reinstall mlflow-ansible with pip"
        )
    return found
