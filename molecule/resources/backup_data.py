#!/usr/bin/env python3
"""The backup drill's data: every kind of object logged with the real client, and a snapshot of all of it.

    backup_data.py seed URL        upgrade_data.py's experiments, runs (params, tags, metric histories),
                                   artifacts and registered model versions, plus traces and a prompt
    backup_data.py snapshot URL    canonical JSON of all of it: artifacts by size and sha256, traces with
                                   their spans, the prompt's versions and alias

Runs on the VM with the deployed venv's Python; upgrade_data.py sits beside it. Credentials come from
MLFLOW_TRACKING_USERNAME/PASSWORD. Two snapshots are equal exactly when no data changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mlflow  # noqa: E402
import upgrade_data  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

PROMPT = f"{upgrade_data.PREFIX}-prompt"
TEMPLATES = ("Answer {{ question }} briefly.", "Answer {{ question }} briefly and politely.")
# Where archival moves spans (a VM-local archive is not in the backup): not compared.
VOLATILE_TRACE_TAGS = ("mlflow.trace.spansLocation", "mlflow.trace.archiveLocation")


def traces_experiment(client: MlflowClient) -> str:
    return client.get_experiment_by_name(f"{upgrade_data.PREFIX}-0").experiment_id


def seed(client: MlflowClient) -> dict:
    result = upgrade_data.seed(client)
    mlflow.set_experiment(experiment_id=traces_experiment(client))
    trace_ids = []
    for i in range(3):
        with mlflow.start_span(name=f"drill-{i}", span_type="CHAIN") as span:
            span.set_inputs({"question": f"question {i}"})
            with mlflow.start_span(name="retrieve", span_type="RETRIEVER") as inner:
                inner.set_attribute("documents", i + 1)
            span.set_outputs({"answer": f"answer {i}"})
        trace_ids.append(span.trace_id)
    mlflow.flush_trace_async_logging()  # the traces exist on the server before they are tagged
    for i, trace_id in enumerate(trace_ids):
        client.set_trace_tag(trace_id, "drill", str(i))
    first = mlflow.genai.register_prompt(name=PROMPT, template=TEMPLATES[0], commit_message="first")
    mlflow.genai.register_prompt(name=PROMPT, template=TEMPLATES[1], commit_message="politer")
    mlflow.genai.set_prompt_alias(PROMPT, alias="production", version=first.version)
    return {**result, "traces": 3, "prompt_versions": 2}


def traces(client: MlflowClient) -> list[dict]:
    found = []
    for trace in client.search_traces(locations=[traces_experiment(client)], max_results=100):
        info = trace.info
        found.append({
            "trace_id": info.trace_id,
            "request_time": info.request_time,
            "execution_duration": info.execution_duration,
            "state": str(info.state),
            "tags": {k: v for k, v in sorted(info.tags.items()) if k not in VOLATILE_TRACE_TAGS},
            "spans": [
                {"name": s.name, "span_id": s.span_id, "parent_id": s.parent_id, "start_time_ns": s.start_time_ns,
                 "end_time_ns": s.end_time_ns, "inputs": s.inputs, "outputs": s.outputs,
                 "attributes": {k: v for k, v in sorted(s.attributes.items())}}
                for s in sorted(trace.data.spans, key=lambda s: s.span_id)
            ],
        })
    return sorted(found, key=lambda t: t["trace_id"])


def prompt() -> dict:
    versions = []
    for version in (1, 2):
        loaded = mlflow.genai.load_prompt(f"prompts:/{PROMPT}/{version}")
        versions.append({"version": loaded.version, "template": loaded.template,
                         "commit_message": loaded.commit_message,
                         "tags": dict(sorted(loaded.tags.items()))})
    alias = mlflow.genai.load_prompt(f"prompts:/{PROMPT}@production")
    return {"name": PROMPT, "versions": versions, "production": alias.version}


def snapshot(client: MlflowClient) -> dict:
    result = upgrade_data.snapshot(client)
    body = {**result["data"], "traces": traces(client), "prompt": prompt()}
    counts = {**result["counts"], "traces": len(body["traces"]),
              "spans": sum(len(t["spans"]) for t in body["traces"]), "prompt_versions": len(body["prompt"]["versions"])}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return {"counts": counts, "sha256": digest, "data": body}


def main() -> int:
    command, url = sys.argv[1], sys.argv[2]
    mlflow.set_tracking_uri(url)
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    result = seed(client) if command == "seed" else snapshot(client)
    print(json.dumps(result, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
