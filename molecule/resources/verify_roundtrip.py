#!/usr/bin/env python3
"""Round trip through a deployed tracking server with the real MLflow client.

    verify_roundtrip.py write URL STATE_FILE   log params, a metric history, a 20 MB artifact, a model version
    verify_roundtrip.py check URL STATE_FILE   read all of it back and compare (checksums included)
    verify_roundtrip.py multipart URL SERVER_URL
        a 12 MiB artifact with the client's proxied multipart upload on (threshold 5 MiB) through
        URL (the TLS proxy), read back; and what URL and SERVER_URL (MLflow itself) answer to
        POST mpu/create: the proxy must refuse it as "not supported" (the client then falls
        back to one upload) where MLflow itself fails
    verify_roundtrip.py prompts URL -
        the Prompt Registry (register, a second version, an alias, load by version and alias,
        search), and model-version sources the server must refuse: a file on the server, a
        foreign bucket, and a prompt's placeholder source on a model that is not a prompt

Runs on the VM with the deployed venv's Python. Prints one JSON object; exits 1 on any mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

ARTIFACT_BYTES = 20 * 1024 * 1024
STEPS = 50


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: str, size: int) -> str:
    """Write size random bytes to path; their sha256."""
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
    return sha256(path)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment called name, created when missing."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def write(client: MlflowClient) -> dict:
    host = socket.gethostname()
    experiment = experiment_id(client, f"verify-{host}")
    run = client.create_run(experiment, run_name=f"roundtrip-{host}")
    run_id = run.info.run_id
    params = {"learning_rate": "0.01", "layers": "3", "host": host}
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for step in range(STEPS):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.set_tag(run_id, "verified-by", "molecule")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights.bin")
        checksum = random_file(path, ARTIFACT_BYTES)
        client.log_artifact(run_id, path, artifact_path="model")
    client.set_terminated(run_id)
    model_name = f"verify-model-{host}"
    if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
        client.create_registered_model(model_name)
    version = client.create_model_version(model_name, f"runs:/{run_id}/model", run_id=run_id)
    return {
        "experiment_id": experiment,
        "run_id": run_id,
        "params": params,
        "sha256": checksum,
        "model": model_name,
        "model_version": version.version,
    }


def check(client: MlflowClient, state: dict) -> dict:
    problems = []
    run = client.get_run(state["run_id"])
    if run.data.params != state["params"]:
        problems.append(f"params {run.data.params} != {state['params']}")
    history = client.get_metric_history(state["run_id"], "loss")
    if len(history) != STEPS or sorted(m.step for m in history) != list(range(STEPS)):
        problems.append(f"metric history has {len(history)} points, expected {STEPS}")
    if run.data.tags.get("verified-by") != "molecule":
        problems.append("tag verified-by missing")
    if run.info.status != "FINISHED":
        problems.append(f"run status {run.info.status}")
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(state["run_id"], "model/weights.bin", tmp)
        size = os.path.getsize(local)
        if size != ARTIFACT_BYTES or sha256(local) != state["sha256"]:
            problems.append(f"artifact differs ({size} bytes)")
    version = client.get_model_version(state["model"], state["model_version"])
    if version.run_id != state["run_id"]:
        problems.append(f"model version points at run {version.run_id}")
    return {
        "ok": not problems,
        "problems": problems,
        "run_id": state["run_id"],
        "artifact_bytes": ARTIFACT_BYTES,
        "metric_points": len(history),
    }


MULTIPART_BYTES = 12 * 1024 * 1024
MULTIPART_THRESHOLD = 5 * 1024 * 1024
TLS_PROXY_CERT = "/etc/nginx/mlflow/tls.crt"


def mpu_create(url: str) -> dict:
    """POST mpu/create as the client does; the status and MLflow's error message."""
    import requests

    response = requests.post(
        f"{url}/api/2.0/mlflow-artifacts/mpu/create/verify/probe.bin",
        json={"path": "probe.bin", "num_parts": 3},
        auth=(os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]),
        # The proxy's certificate (self-signed by tls_proxy, with 127.0.0.1 among its names).
        verify=TLS_PROXY_CERT if url.startswith("https:") else True,
        timeout=60,
    )
    try:
        message = response.json().get("message", "")
    except ValueError:
        message = response.text[:200]
    return {"status": response.status_code, "message": message[:300]}


def multipart(client: MlflowClient, url: str, server_url: str) -> dict:
    from mlflow.exceptions import _UnsupportedMultipartUploadException

    os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] = "true"
    os.environ["MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE"] = str(MULTIPART_THRESHOLD)
    problems = []
    proxy, server = mpu_create(url), mpu_create(server_url)
    if proxy["status"] != 501 or not proxy["message"].startswith(_UnsupportedMultipartUploadException.MESSAGE):
        problems.append(f"the proxy did not refuse mpu/create as unsupported: {proxy}")
    if server["status"] == 501:
        problems.append(f"MLflow itself refuses multipart, the proxy's rule is not what is tested: {server}")
    run_id = client.create_run(experiment_id(client, f"verify-multipart-{socket.gethostname()}")).info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "large.bin")
        checksum = random_file(path, MULTIPART_BYTES)
        client.log_artifact(run_id, path)
        local = client.download_artifacts(run_id, "large.bin", os.path.join(tmp, "back"))
        if os.path.getsize(local) != MULTIPART_BYTES or sha256(local) != checksum:
            problems.append(f"artifact differs ({os.path.getsize(local)} bytes)")
    client.set_terminated(run_id)
    return {
        "ok": not problems,
        "problems": problems,
        "run_id": run_id,
        "artifact_bytes": MULTIPART_BYTES,
        "proxy_mpu_create": proxy,
        "server_mpu_create": server,
    }


PROMPT_TEMPLATES = (
    "Summarise {{ text }} in {{ words }} words.",
    "Summarise {{ text }} in {{ words }} words, politely.",
)
REFUSED_SOURCES = ("file:///etc/passwd", "gs://someone-elses-bucket/models/m", "dummy-source")


def prompts(client: MlflowClient) -> dict:
    from mlflow.exceptions import MlflowException

    problems = []
    name = f"verify-prompt-{socket.gethostname()}"
    first = mlflow.genai.register_prompt(name=name, template=PROMPT_TEMPLATES[0], commit_message="first")
    second = mlflow.genai.register_prompt(name=name, template=PROMPT_TEMPLATES[1], commit_message="politer")
    if int(second.version) != int(first.version) + 1:
        problems.append(f"versions {first.version} then {second.version}")
    mlflow.genai.set_prompt_alias(name, alias="production", version=first.version)
    by_version = mlflow.genai.load_prompt(f"prompts:/{name}/{second.version}")
    by_alias = mlflow.genai.load_prompt(f"prompts:/{name}@production")
    if by_version.template != PROMPT_TEMPLATES[1]:
        problems.append(f"version {second.version} holds {by_version.template!r}")
    if int(by_alias.version) != int(first.version) or by_alias.template != PROMPT_TEMPLATES[0]:
        problems.append(f"alias production gave version {by_alias.version}")
    if by_alias.format(text="the run", words=5) != "Summarise the run in 5 words.":
        problems.append("the template did not format")
    if name not in [found.name for found in mlflow.genai.search_prompts(filter_string=f"name = '{name}'")]:
        problems.append(f"search_prompts did not find {name}")
    model = f"verify-sources-{socket.gethostname()}"
    if not client.search_registered_models(filter_string=f"name = '{model}'"):
        client.create_registered_model(model)
    refused = {}
    for source in REFUSED_SOURCES:
        try:
            client.create_model_version(model, source)
        except MlflowException as exc:
            refused[source] = f"{exc.error_code}: {exc.message[:120]}"
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                problems.append(f"{source}: {refused[source]}")
        else:
            problems.append(f"a model version with source {source} was accepted")
    return {
        "ok": not problems,
        "problems": problems,
        "prompt": name,
        "versions": [first.version, second.version],
        "refused": refused,
    }


def main() -> int:
    # The third argument is the state file (write, check) or MLflow's own URL (multipart).
    action, url, third = sys.argv[1:4]
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    if action == "multipart":
        result = multipart(client, url, server_url=third)
    elif action == "prompts":
        result = prompts(client)
    elif action == "write":
        state = write(client)
        with open(third, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        result = {"ok": True, **state}
    else:
        with open(third, encoding="utf-8") as handle:
            result = check(client, json.load(handle))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
