"""Artifacts through the server's proxy: list, nested directories, a 20 MiB round trip, download by path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BIG = 20 * 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_nested_list_and_download_by_path(target, client, experiment_id, tmp_path: Path):
    import mlflow

    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "deep.txt").write_text("deep\n")
    (tree / "a" / "top.txt").write_text("top\n")
    (tree / "root.json").write_text('{"k": 1}')
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifacts(run_id, str(tree), artifact_path="data")
    client.log_text(run_id, "hello", "notes/hello.txt")
    client.log_dict(run_id, {"answer": 42}, "notes/answer.json")

    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {("data", True), ("notes", True)}
    data = {(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, "data")}
    assert data == {("data/a", True, None), ("data/root.json", False, 8)}
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "data/a/b")] == [("data/a/b/deep.txt", 5)]
    assert client.list_artifacts(run_id, "no/such/dir") == []

    one = Path(client.download_artifacts(run_id, "data/a/b/deep.txt", str(tmp_path / "one")))
    assert one.read_text() == "deep\n"
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data/a", dst_path=str(tmp_path)))
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == ["b/deep.txt", "top.txt"]
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/hello.txt") == "hello"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/notes/answer.json") == {"answer": 42}
    artifact_uri = client.get_run(run_id).info.artifact_uri
    assert mlflow.artifacts.list_artifacts(artifact_uri=artifact_uri + "/notes")


def test_large_file_round_trip(target, client, experiment_id, tmp_path: Path):
    source = tmp_path / "upload" / "blob.bin"
    source.parent.mkdir()
    with source.open("wb") as stream:
        for _ in range(BIG // (1 << 20)):
            stream.write(os.urandom(1 << 20))
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifact(run_id, str(source), artifact_path="big")

    listed = client.list_artifacts(run_id, "big")
    assert [(f.path, f.file_size) for f in listed] == [("big/blob.bin", BIG)]
    downloaded = Path(client.download_artifacts(run_id, "big/blob.bin", str(tmp_path / "download")))
    assert downloaded.stat().st_size == BIG
    assert _sha256(downloaded) == _sha256(source)
    for path in (source, downloaded):  # pytest keeps the last three runs' tmp_path: leave no 40 MiB behind
        path.unlink()
