#!/usr/bin/env python3
"""Seed a tracking server with every kind of object, and snapshot all of it for comparison.

    upgrade_data.py seed URL        experiments, runs (params, tags, metric histories), artifacts, models
    upgrade_data.py snapshot URL    print a canonical JSON of everything the server holds

Runs on the VM with the deployed venv's Python, so the client matches the server (MLflow 2.22
before an upgrade, 3.x after). Credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD.
The snapshot keeps only fields both MLflow 2.x and 3.x clients report, and replaces each
artifact by its size and sha256, so two snapshots are equal exactly when no data changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

PREFIX = "upgrade-check"


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seed(client: MlflowClient) -> dict:
    runs = 0
    for e in range(2):
        experiment_id = client.create_experiment(f"{PREFIX}-{e}", tags={"team": f"team-{e}", "purpose": "upgrade"})
        for r in range(3):
            run = client.create_run(experiment_id, run_name=f"run-{e}-{r}", tags={"seed": str(r)})
            run_id = run.info.run_id
            # One request for the run's params, metric histories and tag: a 2.22 server checks the
            # password's PBKDF2 hash on every request (no auth cache before 3.x). One request per value
            # took the seed 157 s in CI; batched, 42 s.
            client.log_batch(
                run_id,
                metrics=[
                    Metric(key, value, 1_700_000_000_000 + step, step)
                    for step in range(25)
                    for key, value in (("loss", 1.0 / (step + 1 + r)), ("accuracy", step / 25.0))
                ],
                params=[Param(f"param_{k}", f"value-{e}-{r}-{k}") for k in range(4)],
                tags=[RunTag("stage", "seeded")],
            )
            with tempfile.TemporaryDirectory() as scratch:
                for name, size in (("small.txt", 1000), ("data/blob.bin", 1024 * 1024 + 1000 + r)):
                    path = os.path.join(scratch, name)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as handle:
                        handle.write(os.urandom(size))
                    client.log_artifact(run_id, path, os.path.dirname(name) or None)
            client.set_terminated(run_id, "FINISHED", end_time=1_700_000_100_000)
            runs += 1
            if e == 0 and r < 2:
                name = f"{PREFIX}-model"
                if r == 0:
                    client.create_registered_model(name, tags={"owner": "ml"}, description="seeded before upgrade")
                version = client.create_model_version(
                    name, f"runs:/{run_id}/data", run_id=run_id, tags={"r": str(r)}, description=f"version {r}"
                )
                client.set_model_version_tag(name, version.version, "validated", "yes")
    return {"experiments": 2, "runs": runs}


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[dict]:
    found = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found += artifacts(client, run_id, item.path)
            continue
        with tempfile.TemporaryDirectory() as scratch:
            local = client.download_artifacts(run_id, item.path, scratch)
            found.append({"path": item.path, "bytes": os.path.getsize(local), "sha256": sha256(local)})
    return found


def snapshot(client: MlflowClient) -> dict:
    experiments = []
    for experiment in sorted(client.search_experiments(filter_string=f"name LIKE '{PREFIX}%'"), key=lambda x: x.name):
        runs = []
        for run in sorted(
            client.search_runs([experiment.experiment_id], max_results=1000), key=lambda x: x.info.run_id
        ):
            info = run.info
            histories = {
                key: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(info.run_id, key)]
                for key in sorted(run.data.metrics)
            }
            runs.append(
                {
                    "run_id": info.run_id,
                    "run_name": info.run_name,
                    "status": info.status,
                    "start_time": info.start_time,
                    "end_time": info.end_time,
                    "lifecycle_stage": info.lifecycle_stage,
                    "artifact_uri": info.artifact_uri,
                    "params": dict(sorted(run.data.params.items())),
                    "tags": dict(sorted(run.data.tags.items())),
                    "metrics": dict(sorted(run.data.metrics.items())),
                    "histories": {key: sorted(points) for key, points in histories.items()},
                    "artifacts": sorted(artifacts(client, info.run_id), key=lambda a: a["path"]),
                }
            )
        experiments.append(
            {
                "experiment_id": experiment.experiment_id,
                "name": experiment.name,
                "artifact_location": experiment.artifact_location,
                "lifecycle_stage": experiment.lifecycle_stage,
                "tags": dict(sorted(experiment.tags.items())),
                "runs": runs,
            }
        )
    models = []
    for model in sorted(client.search_registered_models(filter_string=f"name LIKE '{PREFIX}%'"), key=lambda m: m.name):
        versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: int(v.version))
        models.append(
            {
                "name": model.name,
                "description": model.description,
                "tags": dict(sorted(model.tags.items())),
                "creation_timestamp": model.creation_timestamp,
                "versions": [
                    {
                        "version": v.version,
                        "source": v.source,
                        "run_id": v.run_id,
                        "status": v.status,
                        "description": v.description,
                        "current_stage": v.current_stage,
                        "tags": dict(sorted(v.tags.items())),
                        "creation_timestamp": v.creation_timestamp,
                    }
                    for v in versions
                ],
            }
        )
    counts = {
        "experiments": len(experiments),
        "runs": sum(len(e["runs"]) for e in experiments),
        "metric_points": sum(len(p) for e in experiments for r in e["runs"] for p in r["histories"].values()),
        "params": sum(len(r["params"]) for e in experiments for r in e["runs"]),
        "artifacts": sum(len(r["artifacts"]) for e in experiments for r in e["runs"]),
        "artifact_bytes": sum(a["bytes"] for e in experiments for r in e["runs"] for a in r["artifacts"]),
        "model_versions": sum(len(m["versions"]) for m in models),
    }
    body = {"experiments": experiments, "models": models}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {"counts": counts, "sha256": digest, "data": body}


def main() -> int:
    command, url = sys.argv[1], sys.argv[2]
    mlflow.set_tracking_uri(url)  # mlflow-artifacts: URIs resolve against the global tracking URI
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    result = seed(client) if command == "seed" else snapshot(client)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
