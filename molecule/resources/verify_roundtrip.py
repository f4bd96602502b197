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
    verify_roundtrip.py gateway URL create LLM_BASE_URL
        the AI Gateway: a secret (provider openai, the key from $VERIFY_LLM_API_KEY, api_base
        LLM_BASE_URL, e.g. the stand-in's http://127.0.0.1:8765/v1), a model definition and an
        endpoint, each under a fresh name (so it can run again), then one chat completion through
        the server's /gateway/mlflow/v1/chat/completions: the LLM's reply must echo the prompt as
        llm_standin.py answers. The server needs MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES=http,https
        and MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS=true for a plain-HTTP loopback LLM, and
        uvicorn: the /gateway/ routes are FastAPI's, so under gunicorn (Flask only) they are a 404.
    verify_roundtrip.py gateway URL invoke ENDPOINT
        the chat completion only, through an endpoint made before (after a key rotation, a
        restart, a new KEK passphrase): fails when the reply is not the LLM's
    verify_roundtrip.py archival-log URL -
        MLflow's trace archival: a trace begun 10 minutes ago ($VERIFY_ARCHIVAL_BACKDATE seconds) and
        one begun now; prints their ids
    verify_roundtrip.py archival-check URL '{"old": ID, "new": ID}'
        the old trace's spans are in the archive (waiting up to $VERIFY_ARCHIVAL_WAIT seconds for a
        pass) and read back through the server; the new one's are still in the database
    verify_roundtrip.py judge URL LLM_BASE_URL
        server-side LLM judges: a gateway endpoint as for gateway create (one chat completion
        through it first), a new experiment with four traces, and a make_judge judge whose model
        is gateway:/ENDPOINT run on them by the server's job runner, as the UI runs it: POST
        /ajax-api/3.0/mlflow/scorer/invoke (jobs invoke_scorer, their feedback logged on the
        traces) and POST /ajax-api/3.0/mlflow/genai/evaluate/invoke (job invoke_genai_evaluate:
        mlflow.genai.evaluate into a new run), polled at /ajax-api/3.0/jobs/ID for up to 300 s
        (then canceled). Every trace must carry the stand-in's verdict (true, its rationale) from
        both, and the run FINISHED with verify_judge/mean 1.0. A built-in judge
        (RelevanceToQuery, the same endpoint) is also registered and started for online scoring:
        the scheduler (once a minute, traces older than 5 minutes) must put its "yes" from the
        LLM on the trace begun 10 minutes ago within $VERIFY_JUDGE_ONLINE_WAIT seconds
        (default 180) of the start. Under basic auth the server's jobs need the executor engine
        (MLFLOW_SERVER_JOB_EXECUTION_ENGINE=executor: the evaluation job writes to the database,
        not through the API) and the role's authorization function (online scoring calls the
        gateway as the server's jobs identity).
        The server needs MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true as well.

Runs on the VM with the deployed venv's Python. Prints one JSON object; exits 1 on any mismatch.
The server's credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as for
every MLflow client; the LLM key only from the environment (never an argument, never printed).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import time
import uuid

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# Traces (the judge action) exported in order, spans first: async, a trace can be created before
# its spans are logged, its spans then go to the artifact store, and the server's judge jobs cannot
# read it ("Trace data not stored in tracking store", SqlAlchemyStore.batch_get_traces).
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")

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
        "artifact_uri": run.info.artifact_uri,
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


GATEWAY_CHAT = "/gateway/mlflow/v1/chat/completions"
GATEWAY_MODEL = "stand-in-chat"
# What llm_standin.py answers (its REPLY_PREFIX): the reply names the prompt, so it is this request's.
STANDIN_REPLY_PREFIX = "stand-in reply to: "


def gateway_store(client: MlflowClient):
    """The client's REST store: MlflowClient has no AI Gateway methods, its store has (RestGatewayStoreMixin)."""
    return client._tracking_client.store


def gateway_masked_key(client: MlflowClient, endpoint: str) -> dict:
    """The endpoint's secret as the server shows it: its name and masked api_key."""
    store = gateway_store(client)
    found = store.get_gateway_endpoint(name=endpoint)
    definition = found.model_mappings[0].model_definition if found.model_mappings else None
    if definition is None or not definition.secret_id:
        return {"secret": None, "masked_key": None}
    secret = store.get_secret_info(secret_id=definition.secret_id)
    return {"secret": secret.secret_name, "masked_key": secret.masked_values.get("api_key")}


def gateway_invoke(client: MlflowClient, endpoint: str) -> dict:
    """One chat completion through the server's OpenAI-compatible route, as MLflow's gateway:/ judges
    call it (model = the endpoint's name), with the client's own credentials; the reply and problems."""
    from mlflow.utils.rest_utils import http_request

    prompt = f"verify {endpoint} {uuid.uuid4().hex}"
    problems = []
    response = http_request(
        gateway_store(client).get_host_creds(),
        GATEWAY_CHAT,
        "POST",
        json={"model": endpoint, "messages": [{"role": "user", "content": prompt}]},
        max_retries=0,  # a failed upstream call is the answer, not a reason to retry
        raise_on_status=False,  # and so is its 500 (else urllib3 raises "too many 500 error responses")
        timeout=60,
    )
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:300]}
    reply = None
    if response.status_code != 200:
        detail = body.get("detail", body) if isinstance(body, dict) else body
        problems.append(f"{GATEWAY_CHAT} answered {response.status_code}: {json.dumps(detail)[:400]}")
    else:
        try:
            reply = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            problems.append(f"no choices[0].message.content in {json.dumps(body)[:300]}")
        if reply is not None and reply != STANDIN_REPLY_PREFIX + prompt:
            problems.append(f"the reply {reply[:200]!r} is not the LLM's answer to {prompt!r}")
    return {"status": response.status_code, "prompt": prompt, "reply": reply, "problems": problems}


def gateway_create(client: MlflowClient, prefix: str, api_base: str, key: str) -> tuple[str, dict]:
    """A secret (provider openai, api_base), a model definition and an endpoint, all named
    PREFIX-HOST-RANDOM; that name and what was made."""
    from mlflow.entities.gateway_endpoint import GatewayEndpointModelConfig, GatewayModelLinkageType

    store = gateway_store(client)
    name = f"{prefix}-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    secret = store.create_gateway_secret(
        secret_name=name,
        secret_value={"api_key": key},
        provider="openai",
        # The OpenAI provider's base URL (mlflow/server/gateway_api.py: auth_config api_base).
        auth_config={"api_base": api_base},
    )
    definition = store.create_gateway_model_definition(
        name=name, secret_id=secret.secret_id, provider="openai", model_name=GATEWAY_MODEL
    )
    store.create_gateway_endpoint(
        name=name,
        model_configs=[
            GatewayEndpointModelConfig(
                model_definition_id=definition.model_definition_id,
                linkage_type=GatewayModelLinkageType.PRIMARY,
            )
        ],
    )
    return name, {"model_definition": name, "api_base": (secret.auth_config or {}).get("api_base")}


def gateway(client: MlflowClient, mode: str, argument: str) -> dict:
    from mlflow.exceptions import MlflowException

    created = {}
    if mode == "create":
        key = os.environ["VERIFY_LLM_API_KEY"]
        endpoint, created = gateway_create(client, "verify-gw", argument, key)
    elif mode == "invoke":
        endpoint, key = argument, os.environ.get("VERIFY_LLM_API_KEY")
    else:
        raise SystemExit(f"gateway: unknown mode {mode!r} (create LLM_BASE_URL, or invoke ENDPOINT)")
    try:
        shown = gateway_masked_key(client, endpoint)
    except MlflowException as exc:
        # A missing endpoint: reported, and the invocation below shows what the gateway answers.
        shown = {"secret": None, "masked_key": None, "lookup_error": exc.message[:200]}
    invoked = gateway_invoke(client, endpoint)
    problems = invoked.pop("problems")
    if "lookup_error" in shown:
        problems.insert(0, f"endpoint {endpoint}: {shown.pop('lookup_error')}")
    result = {
        "ok": not problems,
        "problems": problems,
        "mode": mode,
        "endpoint": endpoint,
        **created,
        **shown,
        "path": GATEWAY_CHAT,
        **invoked,
    }
    # Never: the server masks it ("sk-...1234", or "***" under 8 characters, too short to search for).
    if key and len(key) >= 8 and key in json.dumps(result):
        raise SystemExit("the LLM key would be printed")
    return result


# The judge: an LLM judge (make_judge) whose model is the gateway endpoint, run on the server by
# its job runner, as the UI's "Run judge" and "Run evaluation" buttons do (MLflow 3.17.2).
SCORER_INVOKE = "/ajax-api/3.0/mlflow/scorer/invoke"  # server/handlers.py _invoke_scorer_handler
EVALUATE_INVOKE = "/ajax-api/3.0/mlflow/genai/evaluate/invoke"  # handlers.py _invoke_genai_evaluate_handler
JOB_GET = "/ajax-api/3.0/jobs/{}"  # server/job_api.py get_job: the UI polls it
JOB_CANCEL = "/ajax-api/3.0/jobs/cancel/{}"  # job_api.py cancel_job: the job runner then kills the job
JOB_FINAL = ("SUCCEEDED", "FAILED", "TIMEOUT", "CANCELED")
# A judge retries a failing LLM call 10 times, backing off up to 30 s (genai/judges/adapters/utils.py
# send_chat_request): about 210 s before it records the error. So a job gets longer than that.
JUDGE_JOB_TIMEOUT = 300
JUDGE_NAME = "verify_judge"
JUDGE_INSTRUCTIONS = "Does the answer in {{ outputs }} correctly answer the question in {{ inputs }}?"
# What llm_standin.py answers a judge (its JUDGE_RATIONALE); a bool result is true.
STANDIN_JUDGE_RATIONALE = "stand-in judge: a fixed verdict, no model was run"
JUDGE_TRACES = (
    ("What is the capital of France?", "Paris."),
    ("How many legs has a spider?", "Eight."),
    ("Which gas do plants take in?", "Carbon dioxide."),
)
# Online scoring only reads traces older than the server's completion buffer
# (MLFLOW_ONLINE_SCORING_DEFAULT_TRACE_COMPLETION_BUFFER_SECONDS, 300) and younger than an hour
# (genai/scorers/online/trace_checkpointer.py): one trace begins this long ago, so that the next
# scheduler pass (every minute) takes it.
ONLINE_BACKDATE_SECONDS = 10 * 60
# How long after the first online assessment the judge action looks for a second one.
ONLINE_DUPLICATE_WAIT_SECONDS = 20


def ajax(client: MlflowClient, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One call to the server's UI API with the client's credentials: the status and the JSON."""
    from mlflow.utils.rest_utils import http_request

    kwargs = {"json": body} if body is not None else {}
    response = http_request(
        gateway_store(client).get_host_creds(), path, method, max_retries=0, raise_on_status=False, timeout=60, **kwargs
    )
    try:
        answer = response.json()
    except ValueError:
        answer = {"text": response.text[:300]}
    return response.status_code, answer if isinstance(answer, dict) else {"answer": answer}


def wait_jobs(client: MlflowClient, job_ids: list[str], timeout: float = JUDGE_JOB_TIMEOUT) -> dict:
    """Poll the jobs until they are final; those still running after timeout seconds are canceled.
    {job_id: status, error, result, seconds (the server's, from submission to the last update)}."""
    deadline, jobs = time.monotonic() + timeout, {}
    pending = list(job_ids)
    while pending:
        for job_id in list(pending):
            status, job = ajax(client, "GET", JOB_GET.format(job_id))
            if status != 200:
                job = {"status": f"HTTP {status}: {json.dumps(job)[:300]}"}
            jobs[job_id] = job
            if status != 200 or job.get("status") in JOB_FINAL:
                pending.remove(job_id)
        if pending and time.monotonic() >= deadline:
            for job_id in pending:
                status, answer = ajax(client, "PATCH", JOB_CANCEL.format(job_id))
                jobs[job_id]["status"] = f"{jobs[job_id].get('status')} after {timeout} s, " + (
                    "canceled" if status == 200 else f"cancel answered {status}: {json.dumps(answer)[:200]}"
                )
            break
        if pending:
            time.sleep(2)
    return {
        job_id: {
            "status": job.get("status"),
            "error_message": job["error_message"][-600:] if job.get("error_message") else None,
            "result": job.get("result"),
            "seconds": round((job["last_update_time"] - job["creation_time"]) / 1000, 1)
            if "creation_time" in job
            else None,
        }
        for job_id, job in jobs.items()
    }


def log_judge_traces(experiment: str) -> list[str]:
    """The traces the judge reads: two by mlflow.start_span, one by @mlflow.trace, and one more
    begun ONLINE_BACKDATE_SECONDS ago (start_span_no_context) for online scoring; their ids."""
    mlflow.set_experiment(experiment_id=experiment)
    trace_ids = []
    for question, answer in JUDGE_TRACES[:2]:
        with mlflow.start_span(name="verify_answer", span_type="CHAIN") as span:
            span.set_inputs({"question": question})
            span.set_outputs({"answer": answer})
        trace_ids.append(span.trace_id)

    @mlflow.trace(name="verify_answer", span_type="CHAIN")
    def answer_of(question: str) -> str:
        return dict(JUDGE_TRACES)[question]

    answer_of(JUDGE_TRACES[2][0])
    trace_ids.append(mlflow.get_last_active_trace_id())
    begun = time.time_ns() - ONLINE_BACKDATE_SECONDS * 10**9
    span = mlflow.start_span_no_context(
        name="verify_answer",
        span_type="CHAIN",
        inputs={"question": JUDGE_TRACES[0][0]},
        experiment_id=experiment,
        start_time_ns=begun,
    )
    span.set_outputs({"answer": JUDGE_TRACES[0][1]})
    span.end(end_time_ns=begun + 10**9)
    trace_ids.append(span.trace_id)
    mlflow.flush_trace_async_logging()
    return trace_ids


def spans_elsewhere(client: MlflowClient, trace_ids: list[str]) -> list[str]:
    """The traces whose spans are not in the tracking store, which the server's jobs cannot read."""
    from mlflow.tracing.constant import SpansLocation, TraceTagKey

    return [
        trace_id
        for trace_id in trace_ids
        if client.get_trace(trace_id).info.tags.get(TraceTagKey.SPANS_LOCATION) != SpansLocation.TRACKING_STORE.value
    ]


def per_trace(found: list[tuple[str, str]]) -> list[str]:
    """(trace_id, problem) pairs as one line per problem, naming its traces."""
    traces = {}
    for trace_id, problem in found:
        traces.setdefault(problem, []).append(trace_id)
    return [f"{problem} (traces {', '.join(ids)})" for problem, ids in traces.items()]


def judge_feedback(client: MlflowClient, trace_ids: list[str], model: str, run_id: str | None = None) -> tuple:
    """The judge's feedback on each trace (the one of the evaluation run run_id if given, else one
    of no run): {trace_id: value}, and what is wrong with them."""
    from mlflow.tracing.constant import AssessmentMetadataKey

    values, found = {}, []
    of = f" of run {run_id}" if run_id else ""
    for trace_id in trace_ids:
        feedback = [
            a
            for a in client.get_trace(trace_id).info.assessments or []
            if a.name == JUDGE_NAME
            and a.valid is not False
            and (a.metadata or {}).get(AssessmentMetadataKey.SOURCE_RUN_ID) == run_id
        ]
        if not feedback:
            found.append((trace_id, f"no {JUDGE_NAME} feedback{of}"))
            continue
        feedback = feedback[-1]
        values[trace_id] = feedback.value
        source = feedback.source
        if feedback.error is not None:
            message = (feedback.error.error_message or "")[:300]
            found.append((trace_id, f"{JUDGE_NAME}{of} failed: {feedback.error.error_code}: {message}"))
        elif feedback.value is not True or feedback.rationale != STANDIN_JUDGE_RATIONALE:
            answer = f"{feedback.value!r} ({feedback.rationale!r})"
            found.append((trace_id, f"{JUDGE_NAME}{of} is {answer}, not the stand-in's"))
        elif source is None or source.source_type != "LLM_JUDGE" or source.source_id != model:
            found.append((trace_id, f"{JUDGE_NAME}{of} came from {source}, not the LLM judge {model}"))
    return values, per_trace(found)


def judge_online(client: MlflowClient, online, trace_id: str, started: float, model: str) -> tuple[dict, list[str]]:
    """What online scoring put on the backdated trace, waiting until $VERIFY_JUDGE_ONLINE_WAIT
    seconds (default 180) after it was started, and what is wrong with it."""
    from mlflow.entities import AssessmentSource

    wait = float(os.environ.get("VERIFY_JUDGE_ONLINE_WAIT", "180"))
    while True:
        found = [a for a in client.get_trace(trace_id).info.assessments or [] if a.name == online.name]
        if found or time.time() - started >= wait:
            break
        time.sleep(3)
    if found:
        # A second scheduler (another replica's) scoring the same trace would land within seconds.
        time.sleep(ONLINE_DUPLICATE_WAIT_SECONDS)
        found = [a for a in client.get_trace(trace_id).info.assessments or [] if a.name == online.name]
    first = found[0] if found else None
    problems = []
    if len(found) > 1:
        problems.append(f"online scoring put {len(found)} {online.name} on trace {trace_id}: it was scored twice")
    if first is None:
        problems.append(f"online scoring put no {online.name} on trace {trace_id} within {wait:.0f} s")
    elif first.error is not None:
        message = (first.error.error_message or "")[:300]
        problems.append(f"online {online.name} failed: {first.error.error_code}: {message}")
    elif first.value != "yes" or first.source != AssessmentSource(source_type="LLM_JUDGE", source_id=model):
        problems.append(f"online {online.name} is {first.value!r} from {first.source}, not yes ({model})")
    return {
        "scorer": online.name,
        "trace_id": trace_id,
        "values": [a.value for a in found],
        "error": f"{first.error.error_code}: {(first.error.error_message or '')[:200]}"
        if first is not None and first.error is not None
        else None,
        # From start() to the assessment's creation on the server.
        "seconds": round(first.create_time_ms / 1000 - started, 1) if first is not None else None,
        "waited_up_to": wait,
    }, problems


def judge(client: MlflowClient, base_url: str) -> dict:
    from mlflow.genai.judges import make_judge
    from mlflow.genai.scorers import RelevanceToQuery, ScorerSamplingConfig

    started = time.monotonic()
    key = os.environ["VERIFY_LLM_API_KEY"]
    endpoint, created = gateway_create(client, "verify-judge", base_url, key)
    model = f"gateway:/{endpoint}"
    # The endpoint answers (without retries): else the jobs below only show it after minutes.
    invoked = gateway_invoke(client, endpoint)
    problems = invoked.pop("problems")
    experiment = client.create_experiment(f"verify-judge-{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    trace_ids = log_judge_traces(experiment)
    if elsewhere := spans_elsewhere(client, trace_ids):
        problems.append(f"the spans of traces {elsewhere} are not in the tracking store: the jobs cannot read them")
    verdict = make_judge(name=JUDGE_NAME, instructions=JUDGE_INSTRUCTIONS, model=model, feedback_value_type=bool)
    serialized = json.dumps(verdict.model_dump())
    setup, online_started = round(time.monotonic() - started, 1), time.time()
    # A built-in judge for online scoring: the scheduler runs it for nobody (no user started it).
    online = RelevanceToQuery(model=model).register(name=f"{JUDGE_NAME}_online", experiment_id=experiment).start(
        experiment_id=experiment, sampling_config=ScorerSamplingConfig(sample_rate=1.0)
    )
    try:
        result = judge_jobs(client, experiment, serialized, trace_ids, model, online, online_started, problems)
    finally:
        online.stop(experiment_id=experiment)  # else the scheduler keeps submitting a job a minute for it
    seconds = {"setup": setup, "jobs": result.pop("jobs_seconds"), "total": round(time.monotonic() - started, 1)}
    result = {
        "ok": not result["problems"],
        **result,
        "endpoint": endpoint,
        "model": model,
        **created,
        "gateway_reply": invoked["reply"],
        "experiment_id": experiment,
        "trace_ids": trace_ids,
        "judge": JUDGE_NAME,
        "seconds": seconds,
    }
    if len(key) >= 8 and key in json.dumps(result, default=str):
        raise SystemExit("the LLM key would be printed")
    return result


def judge_jobs(
    client: MlflowClient,
    experiment: str,
    serialized: str,
    trace_ids: list[str],
    model: str,
    online,
    online_started: float,
    problems: list[str],
) -> dict:
    """The judge (serialized) run on the traces by the server's jobs, and what online scoring did."""
    submitted = time.monotonic()
    # Both jobs at once: the judge on the traces (job invoke_scorer, one per batch of traces), its
    # feedback logged on them; and mlflow.genai.evaluate on them into a new run (invoke_genai_evaluate).
    status, scoring = ajax(
        client,
        "POST",
        SCORER_INVOKE,
        {"experiment_id": experiment, "serialized_scorer": serialized, "trace_ids": trace_ids, "log_assessments": True},
    )
    scoring_jobs = [job["job_id"] for job in scoring.get("jobs") or []]
    if status != 200 or not scoring_jobs:
        problems.append(f"{SCORER_INVOKE} answered {status}: {json.dumps(scoring)[:300]}")
    status, evaluation = ajax(
        client,
        "POST",
        EVALUATE_INVOKE,
        {"experiment_id": experiment, "trace_ids": trace_ids, "serialized_scorers": [serialized]},
    )
    run_id = evaluation.get("run_id")
    evaluate_jobs = [evaluation["job_id"]] if "job_id" in evaluation else []
    if status != 200 or not evaluate_jobs:
        problems.append(f"{EVALUATE_INVOKE} answered {status}: {json.dumps(evaluation)[:300]}")
    jobs = wait_jobs(client, scoring_jobs + evaluate_jobs)
    waited = time.monotonic() - submitted

    for job_id in scoring_jobs:
        job = jobs[job_id]
        if job["status"] != "SUCCEEDED":
            problems.append(f"invoke_scorer job {job_id}: {job['status']} {job['error_message'] or ''}".strip())
        # {trace_id: {"assessments": [...], "failures": [...]}} (genai/scorers/job.py invoke_scorer_job):
        # a judge that fails leaves the job SUCCEEDED, with failures here and an error feedback.
        outcomes = job.pop("result")
        failed = [
            (trace_id, f"invoke_scorer job {job_id}: {failure.get('error_code')}: {failure.get('error_message')}"[:400])
            for trace_id, outcome in (outcomes if isinstance(outcomes, dict) else {}).items()
            for failure in (outcome or {}).get("failures") or []
        ]
        problems += per_trace(failed)
    scored, found = judge_feedback(client, trace_ids, model)
    problems += found

    metrics, run_status, evaluated = {}, None, {}
    for job_id in evaluate_jobs:
        job = jobs[job_id]
        if job["status"] != "SUCCEEDED":
            problems.append(f"invoke_genai_evaluate job {job_id}: {job['status']} {job['error_message'] or ''}".strip())
        if not (job["status"] or "").startswith(JOB_FINAL):
            client.set_terminated(run_id, "KILLED")  # as the UI does when it cancels an evaluation
        run = client.get_run(run_id)
        metrics, run_status = dict(run.data.metrics), run.info.status
        if run_status != "FINISHED":
            problems.append(f"evaluation run {run_id} is {run_status}")
        # A judge that fails leaves the job SUCCEEDED and the run FINISHED, without this metric.
        if metrics.get(f"{JUDGE_NAME}/mean") != 1.0:
            problems.append(f"evaluation run {run_id}: {JUDGE_NAME}/mean is {metrics.get(f'{JUDGE_NAME}/mean')}")
        linked = {t.info.trace_id for t in client.search_traces(locations=[experiment], run_id=run_id)}
        if linked != set(trace_ids):
            problems.append(f"evaluation run {run_id} holds traces {sorted(linked)}, not {sorted(trace_ids)}")
        evaluated, found = judge_feedback(client, trace_ids, model, run_id=run_id)
        problems += found

    # Online scoring waits for the scheduler and for traces to age (see ONLINE_BACKDATE_SECONDS).
    online_scoring, found = judge_online(client, online, trace_ids[-1], online_started, model)
    problems += found
    return {
        "problems": problems,
        "invoke_scorer": {"jobs": {job_id: jobs[job_id] for job_id in scoring_jobs}, "values": scored},
        "evaluate": {
            "run_id": run_id,
            "jobs": {job_id: jobs[job_id] for job_id in evaluate_jobs},
            "run_status": run_status,
            "metrics": metrics,
            "values": evaluated,
        },
        "online": online_scoring,
        "jobs_seconds": round(waited, 1),
    }


# MLflow's trace archival (the role's tracking_server_trace_archival_*): a trace begun this long
# ago is older than the scenarios' retention (1m or 5m), one begun now is not.
ARCHIVAL_BACKDATE_SECONDS = 10 * 60


def archival_log(client: MlflowClient) -> dict:
    """A trace begun $VERIFY_ARCHIVAL_BACKDATE seconds ago (default ARCHIVAL_BACKDATE_SECONDS) and one begun
    now, in a new experiment."""
    experiment = client.create_experiment(f"verify-archival-{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    backdate = int(os.environ.get("VERIFY_ARCHIVAL_BACKDATE", ARCHIVAL_BACKDATE_SECONDS))
    begun = time.time_ns() - backdate * 10**9
    old = mlflow.start_span_no_context(name="verify_archived", span_type="CHAIN", inputs={"question": "old"},
                                       experiment_id=experiment, start_time_ns=begun)
    old.set_outputs({"answer": "archived"})
    old.end(end_time_ns=begun + 10**9)
    new = mlflow.start_span_no_context(name="verify_kept", span_type="CHAIN", experiment_id=experiment)
    new.end()
    mlflow.flush_trace_async_logging()
    return {"ok": True, "experiment_id": experiment, "old": old.trace_id, "new": new.trace_id}


def archival_check(client: MlflowClient, traces: dict) -> dict:
    """The old trace's spans moved to the archive (polled up to $VERIFY_ARCHIVAL_WAIT seconds, default 0)
    and read back through the server; the new one's are still in the database."""
    from mlflow.tracing.constant import SpansLocation, TraceTagKey

    deadline = time.monotonic() + float(os.environ.get("VERIFY_ARCHIVAL_WAIT", "0"))
    started = time.monotonic()
    while True:
        old = client.get_trace(traces["old"])
        if old.info.tags.get(TraceTagKey.SPANS_LOCATION) == SpansLocation.ARCHIVE_REPO.value:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(3)
    new = client.get_trace(traces["new"])
    problems = []
    if old.info.tags.get(TraceTagKey.SPANS_LOCATION) != SpansLocation.ARCHIVE_REPO.value:
        problems.append(f"trace {traces['old']} is not archived: {old.info.tags.get(TraceTagKey.SPANS_LOCATION)}")
    if [span.name for span in old.data.spans] != ["verify_archived"] or old.data.spans[0].outputs != {
        "answer": "archived"
    }:
        problems.append(f"trace {traces['old']} reads back as {[span.name for span in old.data.spans]}")
    if new.info.tags.get(TraceTagKey.SPANS_LOCATION) != SpansLocation.TRACKING_STORE.value:
        problems.append(f"trace {traces['new']}, younger than the retention, moved too")
    return {
        "ok": not problems,
        "problems": problems,
        "archive_location": old.info.tags.get(TraceTagKey.ARCHIVE_LOCATION),
        "waited": round(time.monotonic() - started, 1),
    }


def main() -> int:
    # The third argument is the state file (write, check), MLflow's own URL (multipart), the
    # gateway's mode (create, invoke), whose own argument comes fourth, or the LLM's URL (judge).
    action, url, third = sys.argv[1:4]
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    if action == "multipart":
        result = multipart(client, url, server_url=third)
    elif action == "gateway":
        result = gateway(client, mode=third, argument=sys.argv[4])
    elif action == "judge":
        result = judge(client, base_url=third)
    elif action == "prompts":
        result = prompts(client)
    elif action == "archival-log":
        result = archival_log(client)
    elif action == "archival-check":
        result = archival_check(client, json.loads(third))
    elif action == "write":
        state = write(client)
        with open(third, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        result = {"ok": True, **state}
    else:
        with open(third, encoding="utf-8") as handle:
            result = check(client, json.load(handle))
    print(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
