"""The restore action's module steps and the backup unit's entry point, on real SQLite databases and
artifact trees: what a restore refuses (changing nothing) and what it puts back byte for byte.

The buckets are an in-memory stand-in for google-cloud-storage and boto3 (the molecule `topologies`
scenario's drill backs up to the GCS stand-in and restores onto a new VM).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from module_loader import REPO, load_module
from test_mlflow_backup import Failed, FakeModule

backup_module = load_module("mlflow_backup")
utils = sys.modules["ansible_collections.mlflow_ansible.tracking.plugins.module_utils.mlflow_backup"]
INSTALLED = utils.installed_mlflow_version()


def mlflow_like_db(path: Path, experiments=(), models=(), users=(), revision="rev1") -> None:
    """The tables a restore's emptiness check reads, as MLflow names them."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        db.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO experiments VALUES (?, ?)", [(0, "Default"), *enumerate(experiments, 1)])
        db.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, experiment_id INTEGER)")
        db.execute("CREATE TABLE trace_info (request_id TEXT PRIMARY KEY, experiment_id INTEGER)")
        db.execute("CREATE TABLE registered_models (name TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO registered_models VALUES (?)", [(name,) for name in models])
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT)")
        db.executemany("INSERT INTO users (username) VALUES (?)", [(name,) for name in users])


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def site(tmp_path):
    """A server with data (source) and a freshly deployed one (target): databases, artifacts, env files."""
    made = {}
    for name, experiments in (("source", ["train", "mlflow-ansible-canary"]), ("target", ["mlflow-ansible-canary"])):
        home = tmp_path / name
        home.mkdir()
        tracking, auth = home / "mlflow.db", home / "auth.db"
        mlflow_like_db(tracking, experiments, models=["model-a"] if name == "source" else [])
        mlflow_like_db(auth, users=["admin", "alice"] if name == "source" else ["admin"])
        (home / "mlflow.env").write_text(f'MLFLOW_BACKEND_STORE_URI="sqlite:///{tracking}"\n')
        (home / "basic_auth.ini").write_text(f"[mlflow]\ndatabase_uri = sqlite:///{auth}\n")
        artifacts = home / "artifacts"
        (artifacts / "1" / "run1" / "artifacts" / "model").mkdir(parents=True)
        (artifacts / "1" / "run1" / "artifacts" / "model" / "weights.bin").write_bytes(os.urandom(4096) + name.encode())
        (artifacts / "1" / "run1" / "artifacts" / "notes.txt").write_text(f"{name} notes\n")
        made[name] = {"home": home, "tracking": tracking, "auth": auth, "env_file": str(home / "mlflow.env"),
                      "auth_config": str(home / "basic_auth.ini"), "artifacts": artifacts,
                      "backups": home / "backups"}
    return made


def backup_of(server: dict, label: str = "20261202T000000Z-mlflow-x") -> Path:
    result = backup_module.run(FakeModule(state="backup", env_file=server["env_file"],
                                          auth_config=server["auth_config"], dest=str(server["backups"]),
                                          label=label, artifacts_dir=str(server["artifacts"])))
    assert result["mlflow_version"] == INSTALLED
    assert result["artifacts"]["file"] == "artifacts.tar"
    return Path(result["manifest"])


def verify(target: dict, source: str, **params) -> dict:
    params = {"artifacts_dir": str(target["artifacts"]), **params}
    return backup_module.run(FakeModule(
        state="verified", env_file=target["env_file"], auth_config=target["auth_config"], dest=str(target["backups"]),
        source=source, staging=str(target["backups"] / ".restore"),
        canary_experiment="mlflow-ansible-canary", deploy_users=["admin"], **params))


def restore_into(target: dict, manifest: str) -> dict:
    return backup_module.run(FakeModule(state="restore", env_file=target["env_file"], auth_config=target["auth_config"],
                                        manifest=manifest, artifacts_dir=str(target["artifacts"])))


def test_a_fresh_server_takes_the_backup_databases_and_artifacts_byte_for_byte(site):
    source, target = site["source"], site["target"]
    manifest = backup_of(source)
    checked = verify(target, str(manifest.parent))
    assert checked["changed"] is False  # a local backup: nothing fetched
    assert checked["manifest"] == str(manifest) and checked["replaced"] == []
    (target["artifacts"] / "stale.txt").write_text("from the fresh deploy\n")

    restore_into(target, checked["manifest"])
    for database in ("tracking", "auth"):
        with sqlite3.connect(source[database]) as a, sqlite3.connect(target[database]) as b:
            assert list(a.iterdump()) == list(b.iterdump())
    assert tree(target["artifacts"]) == tree(source["artifacts"])  # stale.txt gone, no staging left
    assert not [p for p in target["artifacts"].iterdir() if p.name.startswith(".")]


def test_a_non_empty_target_is_refused_unless_forced(site):
    source, target = site["source"], site["target"]
    manifest = backup_of(source)
    before = target["tracking"].read_bytes(), tree(target["artifacts"])
    # The source server itself holds data beyond a deploy's: an experiment, a model, a user.
    with pytest.raises(Failed) as refused:
        verify(source, str(manifest))
    message = str(refused.value)
    assert "1 experiments in the tracking database" in message
    assert "1 registered models or prompts" in message and "1 users in the auth database" in message
    assert "--force" in message and "nothing was changed" in message

    forced = verify(source, str(manifest), force=True)
    assert len(forced["replaced"]) == 3
    assert (target["tracking"].read_bytes(), tree(target["artifacts"])) == before


def test_a_changed_backup_is_refused_and_nothing_changes(site):
    source, target = site["source"], site["target"]
    manifest = backup_of(source)
    archive = manifest.parent / "artifacts.tar"
    archive.write_bytes(archive.read_bytes()[:-1] + b"\1")
    before = target["tracking"].read_bytes(), tree(target["artifacts"])
    with pytest.raises(Failed, match=r"artifacts.tar does not match the sha256.*Restore another backup"):
        verify(target, str(manifest.parent))
    with pytest.raises(Failed, match="does not match the sha256"):
        restore_into(target, str(manifest))
    assert (target["tracking"].read_bytes(), tree(target["artifacts"])) == before


def test_a_backup_from_a_newer_mlflow_is_refused(site):
    source, target = site["source"], site["target"]
    manifest = backup_of(source)
    data = json.loads(manifest.read_text())
    data["mlflow_version"] = "99.1.0"
    manifest.write_text(json.dumps(data))
    with pytest.raises(Failed, match=rf"taken with MLflow 99.1.0, newer than MLflow {INSTALLED}.*upgrade --to 99.1.0"):
        verify(target, str(manifest))
    data["mlflow_version"] = "3.0.0"  # older: the schema guard migrates it after the restore
    manifest.write_text(json.dumps(data))
    assert verify(target, str(manifest))["mlflow_version"] == "3.0.0"


def test_artifacts_without_a_local_directory_are_refused(site):
    manifest = backup_of(site["source"])
    with pytest.raises(Failed, match="keeps its artifacts elsewhere"):
        verify(site["target"], str(manifest), artifacts_dir=None)


def test_version_order():
    assert utils.version_key("3.17.2") < utils.version_key("3.18.0") < utils.version_key("10.0.0")
    assert utils.version_key("3.18.0rc1") == (3, 18, 0)


class MemoryBucket(utils.Bucket):
    """A stand-in for google-cloud-storage and boto3: objects in a dict shared by every instance."""

    objects: dict[str, dict[str, bytes]] = {}

    def __init__(self, url: str) -> None:
        match = utils.BUCKET.match(url)
        if not match:
            raise utils.BackupError(f"{url} is not a bucket URL")
        self.scheme, self.name, prefix = match.groups()
        self.prefix = prefix.strip("/")
        self.store = self.objects.setdefault(self.name, {})

    def upload(self, path, key):
        self.store[key] = Path(path).read_bytes()

    def download(self, key, path):
        Path(path).write_bytes(self.store[key])

    def keys(self, prefix):
        return sorted(key for key in self.store if key.startswith(prefix))

    def delete(self, keys):
        for key in keys:
            del self.store[key]


@pytest.fixture
def bucket(monkeypatch):
    MemoryBucket.objects = {}
    monkeypatch.setattr(utils, "Bucket", MemoryBucket)
    return MemoryBucket.objects


def unit_backup(server: dict, monkeypatch, destination: str, keep: int, label: str) -> dict:
    """What the backup unit runs (its environment is the server's env file, read by systemd)."""
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", f"sqlite:///{server['tracking']}")
    monkeypatch.setattr(utils, "default_label", lambda: label)
    argv = ["backup", "--auth-config", server["auth_config"], "--backup-dir", str(server["backups"]),
            "--keep", str(keep), "--artifacts-dir", str(server["artifacts"])]
    assert utils.main(argv + (["--destination", destination] if destination else [])) == 0
    return json.loads((server["backups"] / "last-backup.json").read_text())


def test_scheduled_backups_to_a_bucket_keep_the_newest_and_restore_from_latest(site, bucket, monkeypatch, capsys):
    source, target = site["source"], site["target"]
    for day in ("01", "02", "03"):
        last = unit_backup(source, monkeypatch, "gs://backups/mlflow/prod", 2, f"202612{day}T000000Z-mlflow-x")
    assert last["location"] == "gs://backups/mlflow/prod/20261203T000000Z-mlflow-x"
    assert last["removed"] == ["20261201T000000Z-mlflow-x"]
    assert sorted({key.split("/")[2] for key in bucket["backups"]}) == ["20261202T000000Z-mlflow-x",
                                                                         "20261203T000000Z-mlflow-x"]
    assert sorted(p.name for p in source["backups"].iterdir()) == ["last-backup.json"]  # no local copy left
    assert "complete at gs://backups/mlflow/prod/20261203T000000Z-mlflow-x" in capsys.readouterr().out

    checked = verify(target, "latest", destination="gs://backups/mlflow/prod")
    assert checked["changed"] is True and checked["label"] == "20261203T000000Z-mlflow-x"
    assert checked["manifest"] == str(target["backups"] / ".restore" / checked["label"] / "manifest.json")
    restore_into(target, checked["manifest"])
    assert tree(target["artifacts"]) == tree(source["artifacts"])

    # A URL names one backup; in check mode the download goes to a temporary directory, removed again.
    url = "gs://backups/mlflow/prod/20261202T000000Z-mlflow-x"
    staging = target["backups"] / ".restore"
    checked = backup_module.run(FakeModule(
        check_mode=True, state="verified", env_file=target["env_file"], auth_config=target["auth_config"],
        dest=str(target["backups"]), source=url, staging=str(staging), artifacts_dir=str(target["artifacts"]),
        canary_experiment="mlflow-ansible-canary", deploy_users=["admin"], force=True))
    assert checked["label"] == "20261202T000000Z-mlflow-x" and checked["changed"] is False
    assert not Path(checked["manifest"]).exists()


def test_an_incomplete_bucket_backup_is_never_restored_nor_counted(site, bucket, monkeypatch):
    source, target = site["source"], site["target"]
    unit_backup(source, monkeypatch, "s3://backups", 5, "20261201T000000Z-mlflow-x")
    del bucket["backups"]["20261201T000000Z-mlflow-x/manifest.json"]
    with pytest.raises(Failed, match="holds no complete backup"):
        verify(target, "latest", destination="s3://backups")
    with pytest.raises(Failed, match="holds no readable manifest.json"):
        verify(target, "s3://backups/20261201T000000Z-mlflow-x")


def test_a_refused_bucket_backup_leaves_no_download(site, bucket, monkeypatch):
    source = site["source"]
    unit_backup(source, monkeypatch, "gs://backups/p", 5, "20261201T000000Z-mlflow-x")
    with pytest.raises(Failed, match="the target is not empty"):
        verify(source, "latest", destination="gs://backups/p")  # the source holds data
    assert not (source["backups"] / ".restore").exists()


def test_a_failed_backup_fails_the_unit_and_leaves_nothing(site, monkeypatch, capsys):
    server = site["source"]
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "postgresql://mlflow:s3cret@db.invalid/mlflow")
    monkeypatch.setattr(utils.shutil, "which", lambda tool: None)
    assert utils.main(["backup", "--backup-dir", str(server["backups"]), "--keep", "3"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("mlflow-ansible backup failed: BackupError: pg_dump is not installed")
    assert "s3cret" not in error
    assert not (server["backups"] / "last-backup.json").exists()


def test_the_unit_runs_the_installed_copy(site, tmp_path):
    """On the VM the file sits beside mlflow_schema.py, outside any ansible_collections tree."""
    libexec = tmp_path / "libexec"
    libexec.mkdir()
    for name in ("mlflow_backup.py", "mlflow_schema.py"):
        (libexec / name).write_bytes((REPO / "plugins" / "module_utils" / name).read_bytes())
    server = site["source"]
    env = {"PATH": os.environ["PATH"], "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{server['tracking']}"}
    proc = subprocess.run(
        [sys.executable, str(libexec / "mlflow_backup.py"), "backup", "--backup-dir", str(server["backups"]),
         "--keep", "2", "--artifacts-dir", str(server["artifacts"])],
        capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert [entry["database"] for entry in summary["databases"]] == ["tracking"]
    assert Path(summary["location"], "manifest.json").exists()


def test_verified_through_ansible_module(site, tmp_path):
    """state=verified through AnsibleModule (its argument spec) as the restore action runs it."""
    manifest = backup_of(site["source"])
    target = site["target"]
    args = {"state": "verified", "env_file": target["env_file"], "auth_config": target["auth_config"],
            "dest": str(target["backups"]), "source": str(manifest.parent), "staging": str(tmp_path / "staging"),
            "artifacts_dir": str(target["artifacts"]), "canary_experiment": "mlflow-ansible-canary",
            "deploy_users": ["admin"]}
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))
    proc = subprocess.run([sys.executable, str(REPO / "plugins/modules/mlflow_backup.py"), str(path)],
                          capture_output=True, text=True, check=False, env=env)
    result = json.loads(proc.stdout)
    assert result.get("failed") is not True, result
    assert (result["changed"], result["manifest"], result["replaced"]) == (False, str(manifest), [])


def test_a_task_gets_the_bucket_settings_of_the_server_environment(tmp_path):
    env_file = tmp_path / "mlflow.env"
    env_file.write_text('MLFLOW_BACKEND_STORE_URI="postgresql://u:p@db/m"\nSTORAGE_EMULATOR_HOST="http://gcs:9023"\n'
                        'MLFLOW_S3_ENDPOINT_URL="http://s3:9000"\nAWS_SECRET_ACCESS_KEY="k"\n'
                        'MLFLOW_FLASK_SERVER_SECRET_KEY="s"\nGOOGLE_APPLICATION_CREDENTIALS="/etc/mlflow/gcs.json"\n')
    assert utils.bucket_environment(str(env_file)) == {
        "STORAGE_EMULATOR_HOST": "http://gcs:9023", "MLFLOW_S3_ENDPOINT_URL": "http://s3:9000",
        "AWS_SECRET_ACCESS_KEY": "k", "GOOGLE_APPLICATION_CREDENTIALS": "/etc/mlflow/gcs.json"}
