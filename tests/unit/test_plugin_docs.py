"""ansible-doc renders every module and every filter of the collection (none UNDOCUMENTED)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
ANSIBLE_DOC = str(Path(sys.executable).parent / "ansible-doc")


def _doc(kind: str, names: list[str]) -> dict:
    proc = subprocess.run([ANSIBLE_DOC, "-t", kind, "--json", *names], env=ENV, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_every_module_renders():
    names = [f"mlflow_ansible.tracking.{p.stem}" for p in sorted((REPO / "plugins/modules").glob("*.py"))]
    assert "mlflow_ansible.tracking.mlflow_schema" in names
    docs = _doc("module", names)
    for name in names:
        doc = docs[name]["doc"]
        assert doc["short_description"] and doc["options"], name
        assert docs[name]["examples"] and docs[name]["return"], name


def test_every_filter_is_documented():
    kind = "filter"
    from ansible_collections.mlflow_ansible.tracking.plugins.filter.validators import FilterModule

    names = [f"mlflow_ansible.tracking.{name}" for name in sorted(FilterModule().filters())]
    proc = subprocess.run([ANSIBLE_DOC, "-t", kind, "-l", "mlflow_ansible.tracking"], env=ENV, capture_output=True,
                          text=True, check=False, timeout=120)
    assert "UNDOCUMENTED" not in proc.stdout, proc.stdout
    docs = _doc(kind, names)
    for name in names:
        assert docs[name]["doc"]["short_description"] and docs[name]["examples"], name
