"""The collection as a user gets it: `ansible-galaxy collection build`, then installed from the tarball in a
clean virtual environment (ansible-core alone, the version of this venv) next to the collections galaxy.yml
declares, and used from there: ansible-doc renders every module, plugin and role, every playbook passes
--syntax-check, and the deploy playbook's preflight refuses a bad input on localhost (exit 2, the variable
named) from the installed roles, argument specs and filters.

Galaxy is out of reach here, so the declared dependencies (and theirs) are copied out of the `ansible`
package's collections into a directory of their own on the collections path; a dependency missing there
makes the install fail. Nothing sees this checkout: the commands run from a temporary directory with an
environment of their own (no ANSIBLE_CONFIG, no PYTHONPATH, HOME in the temporary tree), and the clean venv
holds no collection. Needs PyPI (or uv's cache) for ansible-core."""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
VENV_BIN = Path(sys.executable).parent
# The collections of the `ansible` package this venv holds, where the declared dependencies come from.
SHIPPED = Path(importlib.metadata.distribution("ansible").locate_file("ansible_collections"))


@dataclass
class Installed:
    work: Path
    tarball: Path
    venv: Path
    deps: Path  # a collections path holding the dependencies only
    collections: Path  # the collections path the tarball was installed into
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.collections / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.venv / "bin" / argv[0]), *argv[1:]], cwd=self.work, env=env or self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _uv() -> list[str]:
    for candidate in (VENV_BIN / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return [str(candidate)]
    return [sys.executable, "-m", "uv"]  # scripts/setup installs uv into the venv; this fails loudly if not


def _manifest(path: Path) -> dict:
    return json.loads((path / "MANIFEST.json").read_text())["collection_info"]


def _copy_dependencies(names: list[str], into: Path) -> list[str]:
    """Copy the named collections and what they depend on from the `ansible` package; the names copied."""
    copied: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in copied:
            continue
        source = SHIPPED.joinpath(*name.split("."))
        assert source.is_dir(), f"{name} is not among the ansible package's collections ({SHIPPED})"
        shutil.copytree(source, into / "ansible_collections" / Path(*name.split(".")),
                        ignore=shutil.ignore_patterns("__pycache__"))
        copied.append(name)
        todo.extend(_manifest(source).get("dependencies") or {})
    return copied


def _clean_env(work: Path, *paths: Path) -> dict[str, str]:
    home = work / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(str(p) for p in paths),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """Built and installed once for the session, whichever pytest-xdist worker asks first (the other waits)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers
    work = root / "collection-tarball"
    with (root / "collection-tarball.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = work / "installed"
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            _build_and_install(work)
            done.touch()
    collections = work / "collections"
    return Installed(work, next((work / "dist").glob("*.tar.gz")), work / "venv", work / "deps", collections,
                     _clean_env(work, collections, work / "deps"))


def _build_and_install(work: Path) -> None:
    build = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(work / "dist"), str(REPO)],
        cwd=work, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    (tarball,) = (work / "dist").glob("*.tar.gz")

    venv = work / "venv"
    core = importlib.metadata.version("ansible-core")
    for argv in (["venv", "--quiet", "--python", sys.executable, str(venv)],
                 ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), f"ansible-core=={core}"]):
        proc = subprocess.run([*_uv(), *argv], cwd=work, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # ansible-core alone: no collection in the venv (ansible-core's internal one aside).
    assert not list((venv / "lib").glob("python*/site-packages/ansible_collections"))

    deps = work / "deps"
    _copy_dependencies(list(GALAXY["dependencies"]), deps)
    collections = work / "collections"
    env = _clean_env(work, collections, deps)
    proc = Installed(work, tarball, venv, deps, collections, env).run(
        "ansible-galaxy", "collection", "install", "--offline", "-p", str(collections), str(tarball))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{FQCN}:{GALAXY['version']} was installed successfully" in proc.stdout, proc.stdout


def test_the_tarball_ships_the_collection_and_not_the_repository(installed):
    root = installed.root
    for part in ("plugins/modules", "plugins/filter", "plugins/vars", "plugins/module_utils", "roles", "playbooks"):
        shipped = sorted(p.name for p in (root / part).iterdir() if p.name != "__pycache__")
        expected = sorted(p.name for p in (REPO / part).iterdir() if p.name != "__pycache__")
        assert shipped == expected, part
    for name in ("meta/runtime.yml", "README.md", "CHANGELOG.md", "changelogs/changelog.yaml"):
        assert (root / name).is_file(), name
    for name in ("tests", "molecule", "mlflow_ansible", "scripts", "bench", "collections", "pyproject.toml",
                 "ansible.cfg", "inventory", "changelogs/fragments", ".config"):
        assert not (root / name).exists(), f"{name} ships in the tarball (galaxy.yml build_ignore)"
    manifest = _manifest(root)
    assert manifest["version"] == GALAXY["version"]
    assert manifest["dependencies"] == GALAXY["dependencies"]


def test_only_the_installed_copy_is_seen(installed):
    proc = installed.run("ansible-galaxy", "collection", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    found = {path: list(names) for path, names in json.loads(proc.stdout).items()}
    holding = [path for path, names in found.items() if FQCN in names]
    assert holding == [str(installed.collections / "ansible_collections")], found


def test_each_declared_dependency_is_required(installed, tmp_path):
    """The tarball's manifest carries the dependencies: without any one of them the install fails offline."""
    for missing in GALAXY["dependencies"]:
        deps = tmp_path / f"deps-without-{missing}"
        copied = _copy_dependencies([name for name in GALAXY["dependencies"] if name != missing], deps)
        assert missing not in copied
        target = tmp_path / f"collections-without-{missing}"
        proc = installed.run("ansible-galaxy", "collection", "install", "--offline", "-p", str(target),
                             str(installed.tarball), env=_clean_env(tmp_path, target, deps))
        assert proc.returncode != 0, f"installed without {missing}:\n{proc.stdout}"
        assert f"* {missing}:{GALAXY['dependencies'][missing]} (dependency of {FQCN}" in proc.stderr, proc.stderr
        assert not (target / "ansible_collections" / GALAXY["namespace"]).exists()


def _doc(installed: Installed, kind: str, names: list[str]) -> dict:
    proc = installed.run("ansible-doc", "-t", kind, "--json", *names)
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = json.loads(proc.stdout)
    assert sorted(docs) == sorted(names), kind
    return docs


def test_ansible_doc_renders_every_plugin_and_role_from_the_install(installed):
    root = installed.root
    modules = [f"{FQCN}.{p.stem}" for p in sorted((root / "plugins/modules").glob("*.py")) if p.stem != "__init__"]
    filters = [f"{FQCN}.{p.stem}" for p in sorted((root / "plugins/filter").glob("*.yml"))]
    vars_plugins = [f"{FQCN}.{p.stem}" for p in sorted((root / "plugins/vars").glob("*.py")) if p.stem != "__init__"]
    assert modules and len(filters) >= 4 and vars_plugins
    for kind, names in (("module", modules), ("filter", filters), ("vars", vars_plugins)):
        for name, entry in _doc(installed, kind, names).items():
            doc = entry["doc"]
            assert doc["short_description"], name
            assert Path(doc["filename"]).is_relative_to(root), (name, doc["filename"])
            if kind == "module":
                assert doc["options"] and entry["examples"] and entry["return"], name
    roles = sorted(p.name for p in (root / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
    assert len(roles) == len(list((REPO / "roles").iterdir()))
    docs = _doc(installed, "role", [f"{FQCN}.{role}" for role in roles])
    for name, entry in docs.items():
        assert Path(entry["path"]).is_relative_to(root), (name, entry["path"])
        assert entry["entry_points"]["main"]["short_description"], name
        assert entry["entry_points"]["main"]["options"], name


def test_what_the_shipped_roles_use_of_other_collections_is_declared_and_resolves(installed):
    """Every module, filter and test of another collection that the shipped roles and playbooks name comes from a
    declared dependency, resolves from the dependencies' path (ansible-doc), and every declared one is used.
    (A syntax check does not show this: the roles are included at run time.)"""
    pattern = re.compile(r"\b([a-z_0-9]+)\.([a-z_0-9]+)\.([a-z_0-9]+)\b")
    used: dict[str, set[str]] = {}
    for path in sorted(installed.root.glob("roles/**/*")) + sorted(installed.root.glob("playbooks/*")):
        if path.suffix not in (".yml", ".yaml", ".j2") or not path.is_file():
            continue
        for namespace, name, plugin in pattern.findall(path.read_text()):
            collection = f"{namespace}.{name}"
            if collection in ("ansible.builtin", FQCN) or not SHIPPED.joinpath(namespace, name).is_dir():
                continue  # not a collection's plugin (a dotted variable or file name)
            used.setdefault(collection, set()).add(plugin)
    assert set(used) == set(GALAXY["dependencies"]), "galaxy.yml dependencies differ from the collections used"
    by_kind: dict[str, list[str]] = {}
    for collection, plugins in used.items():
        source = installed.deps / "ansible_collections" / Path(*collection.split("."))
        for plugin in sorted(plugins):
            kind = next((kind for kind, folder in (("module", "modules"), ("filter", "filter"), ("test", "test"))
                         if (source / "plugins" / folder / f"{plugin}.py").is_file()), None)
            assert kind, f"{collection}.{plugin} is no module, filter or test of {collection}"
            by_kind.setdefault(kind, []).append(f"{collection}.{plugin}")
    assert "module" in by_kind and "test" in by_kind
    for kind, names in by_kind.items():
        for name, entry in _doc(installed, kind, names).items():
            assert Path(entry["doc"]["filename"]).is_relative_to(installed.deps), (name, entry["doc"]["filename"])


def test_every_shipped_playbook_passes_syntax_check(installed):
    """By its FQCN; a playbook whose name is no identifier (rotate-kek) has none that ansible-playbook resolves,
    and is reached as an action of the site playbook (as the wrapper runs it)."""
    stems = [p.stem for p in sorted((installed.root / "playbooks").glob("*.yml"))]
    assert "deploy" in stems and "testbed" in stems and "site" in stems
    by_name = [stem for stem in stems if stem.isidentifier()]
    proc = installed.run("ansible-playbook", "-i", "localhost,", "--syntax-check", *(f"{FQCN}.{n}" for n in by_name))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stem in by_name:  # each found in the installed copy
        assert f"playbook: {installed.root}/playbooks/{stem}.yml" in proc.stdout, (stem, proc.stdout)
    for stem in (stem for stem in stems if not stem.isidentifier()):
        proc = installed.run("ansible-playbook", "-i", "localhost,", "--syntax-check", f"{FQCN}.site",
                             "-e", f"mlflow_ansible_action={stem}")
        assert proc.returncode == 0, stem + proc.stdout[-3000:] + proc.stderr[-3000:]


def test_the_installed_deploy_refuses_a_bad_input_on_localhost(installed):
    """A real run of the installed deploy playbook: its preflight (the roles' preflight tasks, their argument
    specs, the collection's filters) stops at the bad backend store URI before touching the host."""
    inventory = installed.work / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"mlflow_servers": {"hosts": {"controller": {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(installed.venv / "bin" / "python"),
        "cloudsql_client_host": "127.0.0.1",
        "cloudsql_client_password": "preflight-test-password",
        "tracking_server_artifacts_destination": "gs://mlflow-test-bucket/artifacts",
        "tracking_server_backend_store_uri": "mssql://mlflow:pw@db/mlflow",
    }}}}}}))
    proc = installed.run("ansible-playbook", "-i", str(inventory), f"{FQCN}.deploy")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "tracking_server_backend_store_uri is not usable: the scheme is 'mssql'" in output, output[-3000:]
    # The role's argument spec ran, and the failing task is the installed copy's.
    assert "Validating arguments against arg spec 'preflight'" in output
    assert f"Origin: {installed.root}/roles/tracking_server/tasks/preflight.yml" in output, output[-3000:]
    assert "PLAY [Deploy the MLflow tracking server]" not in output
    assert "ok=0" not in output and "failed=1" in output
