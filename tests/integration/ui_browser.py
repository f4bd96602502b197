"""The MLflow UI in a real browser: Debian's chromium driven by Playwright's sync API.

`check_ui(url, username, password, artifacts_dir, headers=None)` creates, through the REST API, an experiment
holding a run (a param, a metric, a text artifact, a trace), a registered model version and a prompt; then opens
the UI's pages that show them, logged in with basic auth (or as the user the headers name: Google IAP's signed
header), and creates a prompt from the UI's "Create prompt" dialog. It raises
AssertionError when a page lacks what it should show, on any console error, failed request or HTTP error response
not allowed below (ALLOWED_CONSOLE_ERRORS, ALLOWED_RESPONSES, ALLOWED_FAILED_REQUESTS, each rule with its reason),
and when the API does not hold the prompt made in the UI. A pass through the UI broken by a change of the host's
network (NETWORK_CHANGED) is done again. One screenshot per page goes to artifacts_dir.

Needs `playwright` (the test extra) and /usr/bin/chromium (scripts/setup installs both); no `playwright install`.
`python ui_browser.py URL ARTIFACTS_DIR` runs it from the command line (main()).
"""

from __future__ import annotations

import json
import re
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from urllib3.exceptions import InsecureRequestWarning

CHROMIUM = "/usr/bin/chromium"
# How long one page may take to show what it should (the UI polls, so "networkidle" never comes).
PAGE_TIMEOUT_MS = 30_000
API_TIMEOUT_S = 30

# What check_ui tolerates, all of it here. Each rule: (label, pattern(s), reason); a tolerated event is reported
# in the result's "allowed" with its rule's label. Anything else fails check_ui.

# Responses >= 400 the UI gets on a healthy server: (label, method, URL regex, status, reason). None on 3.17.2.
ALLOWED_RESPONSES: list[tuple[str, str, str, int, str]] = []

# Console errors the UI logs on a healthy server: (label, message regex, reason).
ALLOWED_CONSOLE_ERRORS: list[tuple[str, str, str]] = [
    (
        "resize-observer-loop",
        r"^null ResizeObserver loop completed with undelivered notifications\.$",
        "the UI's window.onerror logs every window error with console.error(error, message) (end of main.*.js); "
        "Chromium raises this one, with no error object (hence 'null'), when a ResizeObserver callback changes "
        "the layout it observes, here when the trace drawer opens: the notifications come on the next frame, "
        "nothing is lost and no code failed",
    ),
]

# Requests that get no answer at all: (label, URL regex, failure text regex, reason). None on 3.17.2.
ALLOWED_FAILED_REQUESTS: list[tuple[str, str, str, str]] = []

# Not allowed, but retried: Chromium fails every request in flight with this error when the host's network
# interfaces or addresses change, which Docker does whenever a container or network on this machine starts or
# stops (the sandbox's own, other tests', another user's). It says nothing about the server or the UI: when a pass
# through the UI saw it, the whole pass is done again in a fresh browser context after a pause (Docker changes come
# in bursts of a few seconds), up to ATTEMPTS passes in all.
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
ATTEMPTS = 4
RETRY_PAUSE_S = 5


def _allowed_response(method: str, url: str, status: int) -> str | None:
    for label, allowed_method, pattern, allowed_status, _reason in ALLOWED_RESPONSES:
        if method == allowed_method and status == allowed_status and re.search(pattern, url):
            return label
    return None


def _allowed_console(text: str) -> str | None:
    for label, pattern, _reason in ALLOWED_CONSOLE_ERRORS:
        if re.search(pattern, text):
            return label
    return None


def _allowed_failure(url: str, failure: str) -> str | None:
    for label, pattern, failure_pattern, _reason in ALLOWED_FAILED_REQUESTS:
        if re.search(pattern, url) and re.search(failure_pattern, failure):
            return label
    return None


# --- The data, through the REST API ----------------------------------------------------------------------------


class _Api:
    """MLflow's REST API with basic auth. TLS is not verified: the sandbox's certificate is self-signed, and the
    browser runs with ignore_https_errors too. The environment is not trusted: REQUESTS_CA_BUNDLE would override
    verify=False, and a proxy from HTTPS_PROXY has no business between this host and its loopback sandbox."""

    def __init__(self, url: str, username: str | None, password: str | None, headers: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if username is not None:
            self.session.auth = (username, password or "")
        self.session.headers.update(headers)
        self.session.verify = False
        self.session.trust_env = False

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                response = self.session.request(method, f"{self.url}{path}", timeout=API_TIMEOUT_S, **kwargs)
        except requests.RequestException as exc:
            raise AssertionError(f"MLflow API {method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise AssertionError(f"MLflow API {method} {path} answered {response.status_code}: {response.text[:500]}")
        return response

    def post(self, path: str, body: dict) -> dict:
        return self.call("POST", f"/api/2.0/mlflow/{path}", json=body).json()

    def get(self, path: str, **params: str) -> dict:
        return self.call("GET", f"/api/2.0/mlflow/{path}", params=params).json()


def _otlp_span(trace_id: str, span_id: str, name: str, question: str, start_ns: int, end_ns: int) -> dict:
    def attribute(key: str, value: str) -> dict:
        return {"key": key, "value": {"stringValue": value}}

    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [
            attribute("mlflow.spanType", json.dumps("CHAIN")),
            attribute("mlflow.spanInputs", json.dumps({"question": question})),
            attribute("mlflow.spanOutputs", json.dumps({"answer": "this trace"})),
        ],
        "status": {"code": 1},
    }


@dataclass
class _Seed:
    tag: str
    experiment_name: str = ""
    experiment_id: str = ""
    run_id: str = ""
    run_name: str = ""
    param: tuple[str, str] = ("ui_check_param", "chromium")
    metric: tuple[str, float] = ("ui_check_metric", 0.875)
    artifact: str = "ui-check.txt"
    artifact_text: str = ""
    trace_id: str = ""
    span_name: str = ""
    question: str = ""
    model_name: str = ""
    prompt_name: str = ""
    ui_prompt_name: str = ""
    ui_template: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _seed(api: _Api) -> _Seed:
    """An experiment with a finished run (param, metric, artifact, trace), a model version and a prompt."""
    seed = _Seed(tag=uuid.uuid4().hex[:8])
    seed.experiment_name = f"ui-check-{seed.tag}"
    seed.run_name = f"ui-check-run-{seed.tag}"
    seed.model_name = f"ui-check-model-{seed.tag}"
    seed.prompt_name = f"ui-check-prompt-{seed.tag}"
    seed.ui_prompt_name = f"ui-check-ui-prompt-{seed.tag}"
    seed.ui_template = f"Summarise {{{{text}}}} for the browser check {seed.tag}."
    seed.span_name = f"ui-check-span-{seed.tag}"
    seed.artifact_text = f"written by ui_browser.py for {seed.tag}"
    seed.question = f"what does the UI show for {seed.tag}?"
    started = time.monotonic()
    now_ms = int(time.time() * 1000)

    seed.experiment_id = api.post("experiments/create", {"name": seed.experiment_name})["experiment_id"]
    run = api.post(
        "runs/create", {"experiment_id": seed.experiment_id, "run_name": seed.run_name, "start_time": now_ms}
    )["run"]
    seed.run_id = run["info"]["run_id"]
    api.post("runs/log-parameter", {"run_id": seed.run_id, "key": seed.param[0], "value": seed.param[1]})
    api.post(
        "runs/log-metric",
        {"run_id": seed.run_id, "key": seed.metric[0], "value": seed.metric[1], "timestamp": now_ms, "step": 0},
    )

    # The artifact goes through the server's artifact proxy (--serve-artifacts: mlflow-artifacts:/<path>).
    artifact_uri = run["info"]["artifact_uri"]
    match = re.match(r"mlflow-artifacts:(?://[^/]*)?/(.+)$", artifact_uri)
    assert match, f"the run's artifact URI {artifact_uri!r} is not served by the tracking server's proxy"
    api.call(
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{match.group(1)}/{seed.artifact}",
        data=f"{seed.artifact_text}\n".encode(),
    )

    # The trace: one span through the server's OTLP endpoint, linked to the run.
    seed.trace_id = uuid.uuid4().hex
    start_ns = time.time_ns()
    api.call(
        "POST",
        "/v1/traces",
        data=json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": []},
                        "scopeSpans": [
                            {
                                "spans": [
                                    _otlp_span(
                                        seed.trace_id,
                                        uuid.uuid4().hex[:16],
                                        seed.span_name,
                                        seed.question,
                                        start_ns,
                                        start_ns + 25_000_000,
                                    )
                                ]
                            }
                        ],
                    }
                ]
            }
        ),
        headers={
            "Content-Type": "application/json",
            "x-mlflow-experiment-id": seed.experiment_id,
            "x-mlflow-run-id": seed.run_id,
        },
    )
    api.post("runs/update", {"run_id": seed.run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})

    api.post("registered-models/create", {"name": seed.model_name})
    api.post(
        "model-versions/create",
        {"name": seed.model_name, "source": artifact_uri, "run_id": seed.run_id},
    )

    api.post(
        "registered-models/create",
        {"name": seed.prompt_name, "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
    )
    api.post(
        "model-versions/create",
        {
            "name": seed.prompt_name,
            "source": "prompt-template",
            "tags": [
                {"key": "mlflow.prompt.is_prompt", "value": "true"},
                {"key": "mlflow.prompt.text", "value": "Answer {{question}} in one line."},
                {"key": "_mlflow_prompt_type", "value": "text"},
            ],
        },
    )
    seed.timings["seed"] = round(time.monotonic() - started, 2)
    return seed


# --- The browser -------------------------------------------------------------------------------------------------


@dataclass
class _Watch:
    """What the browser reported: the problems that fail check_ui, and what was allowed and why."""

    problems: list[str] = field(default_factory=list)
    allowed: dict[str, int] = field(default_factory=dict)
    console_warnings: list[str] = field(default_factory=list)
    requests: int = 0
    responses: int = 0
    console_messages: dict[str, int] = field(default_factory=dict)
    network_changed: bool = False

    def attach(self, context: BrowserContext) -> None:
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        context.on("requestfailed", self._on_request_failed)
        context.on("console", self._on_console)
        context.on("weberror", lambda error: self.problems.append(f"uncaught page error: {error.error}"))

    def _judge(self, line: str, label: str | None) -> None:
        if label is None:
            self.problems.append(line)
        else:
            key = f"{line} [{label}]"
            self.allowed[key] = self.allowed.get(key, 0) + 1

    def _on_request(self, request: Any) -> None:
        self.requests += 1

    def _on_response(self, response: Any) -> None:
        self.responses += 1
        if response.status < 400:
            return
        method = response.request.method
        line = f"{method} {response.url} -> HTTP {response.status}"
        label = _allowed_response(method, response.url, response.status)
        self._judge(line, label)

    def _on_request_failed(self, request: Any) -> None:
        failure = request.failure or "unknown failure"
        if NETWORK_CHANGED in failure:
            self.network_changed = True
        line = f"{request.method} {request.url} failed: {failure}"
        label = _allowed_failure(request.url, failure)
        self._judge(line, label)

    def _on_console(self, message: Any) -> None:
        self.console_messages[message.type] = self.console_messages.get(message.type, 0) + 1
        if message.type == "warning" and len(self.console_warnings) < 20:
            self.console_warnings.append(message.text[:300])
        if message.type != "error":
            return
        location = message.location or {}
        where = f"{location.get('url', '?')}:{location.get('lineNumber', '?')}:{location.get('columnNumber', '?')}"
        line = f"console error: {message.text} (at {where})"
        label = _allowed_console(message.text)
        self._judge(line, label)


class _Pages:
    """Opens the UI's pages one by one: each waits for what it must show and leaves a screenshot."""

    def __init__(self, page: Page, url: str, artifacts_dir: Path, watch: _Watch) -> None:
        self.page = page
        self.url = url.rstrip("/")
        self.artifacts_dir = artifacts_dir
        self.watch = watch
        self.seen: list[dict] = []

    def open(self, name: str, route: str, *expected: tuple[str, Any]) -> dict:
        """Go to #<route> and wait for each (description, locator factory) in expected to be visible."""
        started = time.monotonic()
        response = self.page.goto(f"{self.url}/#{route}", wait_until="load")
        # A response only when the document itself loads (the first page); later routes change the hash only.
        if response is not None and response.status >= 400:
            shot = self.screenshot(f"FAILED-{name}")
            raise AssertionError(f"UI page {name!r}: {response.url} answered HTTP {response.status}; screenshot {shot}")
        return self.expect(name, *expected, started=started)

    def expect(self, name: str, *expected: tuple[str, Any], started: float | None = None) -> dict:
        started = time.monotonic() if started is None else started
        for description, locate in expected:
            locator = locate(self.page).first
            deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
            while True:
                try:
                    locator.wait_for(state="visible", timeout=1_000)
                    break
                except PlaywrightTimeoutError:
                    # No point waiting on when the host's network changed under the page (see NETWORK_CHANGED).
                    if time.monotonic() < deadline and not self.watch.network_changed:
                        continue
                shot = self.screenshot(f"FAILED-{name}")
                waited = round(time.monotonic() - started)
                raise AssertionError(
                    f"UI page {name!r} ({self.page.url}): {description} not visible after {waited}s; screenshot {shot}"
                )
        seconds = round(time.monotonic() - started, 2)
        entry = {"page": name, "url": self.page.url, "seconds": seconds, "screenshot": str(self.screenshot(name))}
        self.seen.append(entry)
        return entry

    def screenshot(self, name: str) -> Path:
        path = self.artifacts_dir / f"{len(self.seen) + 1:02d}-{name}.png"
        try:
            self.page.screenshot(path=str(path), full_page=True)
        except PlaywrightError:
            pass
        return path


def _text(value: str):
    return lambda page: page.get_by_text(value, exact=True)


def _dismiss_guidance(page: Page) -> None:
    """Close the modal "Detect Issues in Your Traces" tour the traces page opens in a fresh browser profile (it
    blocks clicks on the table until dismissed); nothing when it does not come."""
    got_it = page.get_by_role("button", name="Got it", exact=True)
    try:
        got_it.wait_for(state="visible", timeout=5_000)
    except PlaywrightTimeoutError:
        return
    got_it.click()
    got_it.wait_for(state="hidden", timeout=5_000)


def _browse(pages: _Pages, seed: _Seed) -> dict:
    page = pages.page
    exp = f"/experiments/{seed.experiment_id}"
    counts: dict[str, int] = {}

    pages.open(
        "experiments",
        "/experiments",
        ("the experiment's link", lambda p: p.get_by_role("link", name=seed.experiment_name, exact=True)),
    )
    counts["experiments_listed"] = page.get_by_role("link", name=re.compile(r"^ui-check-")).count()

    pages.open("runs", f"{exp}/runs", ("the run", lambda p: p.get_by_role("link", name=seed.run_name, exact=True)))
    pages.open("traces", f"{exp}/traces", ("the trace's input", lambda p: p.get_by_text(seed.question)))
    counts["traces_listed"] = page.get_by_text(seed.question).count()
    started = time.monotonic()
    _dismiss_guidance(page)
    page.get_by_text(seed.question).first.click()
    pages.expect("trace", ("the trace's span", _text(seed.span_name)), started=started)
    page.keyboard.press("Escape")
    pages.open(
        "run",
        f"{exp}/runs/{seed.run_id}",
        ("the run's name", _text(seed.run_name)),
        ("the param", _text(seed.param[0])),
        ("the metric", _text(seed.metric[0])),
    )
    pages.open("artifacts", f"{exp}/runs/{seed.run_id}/artifacts", ("the artifact", _text(seed.artifact)))
    started = time.monotonic()
    page.get_by_text(seed.artifact, exact=True).first.click()
    pages.expect(
        "artifact-preview", ("the artifact's content", lambda p: p.get_by_text(seed.artifact_text)), started=started
    )
    pages.open("models", "/models", ("the model", lambda p: p.get_by_role("link", name=seed.model_name, exact=True)))
    pages.open(
        "prompts", "/prompts", ("the prompt", lambda p: p.get_by_role("link", name=seed.prompt_name, exact=True))
    )
    counts["prompts_listed"] = page.get_by_role("link", name=re.compile(r"^ui-check-")).count()
    return counts


def _create_prompt_in_ui(pages: _Pages, seed: _Seed, name: str) -> None:
    """On the prompts page: "Create prompt", fill the name and the template, "Create"; the prompt's page opens."""
    page = pages.page
    started = time.monotonic()
    page.get_by_role("button", name="Create prompt").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Prompt", exact=False).fill(seed.ui_template)
    pages.expect("create-prompt-dialog", ("the dialog", lambda p: p.get_by_role("dialog")), started=started)
    dialog.get_by_role("button", name="Create", exact=True).click()
    pages.expect(
        "created-prompt",
        ("the new prompt's name", _text(name)),
        ("its template", lambda p: p.get_by_text(seed.ui_template)),
        started=started,
    )


def _check_prompt_through_api(api: _Api, seed: _Seed, name: str) -> None:
    model = api.get("registered-models/get", name=name)["registered_model"]
    tags = {tag["key"]: tag["value"] for tag in model.get("tags", [])}
    assert tags.get("mlflow.prompt.is_prompt") == "true", f"{name!r}, created in the UI, is not a prompt: {model}"
    version = api.get("model-versions/get", name=name, version="1")["model_version"]
    tags = {tag["key"]: tag["value"] for tag in version.get("tags", [])}
    assert tags.get("mlflow.prompt.text") == seed.ui_template, (
        f"{name!r} version 1, created in the UI, does not hold the template typed in: {version}"
    )


def _attempt(
    browser: Browser, url: str, identity: dict, pages_dir: Path, seed: _Seed, prompt_name: str
) -> tuple[_Pages, _Watch, dict, AssertionError | None]:
    """One pass through the UI in a fresh browser context (a new profile: no cookies, no local storage).
    identity: Playwright's context options that carry who the user is (basic auth or headers)."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1600, "height": 1000}, **identity)
    watch = _Watch()
    watch.attach(context)
    pages = _Pages(context.new_page(), url, pages_dir, watch)
    counts: dict = {}
    failure: AssertionError | None = None
    try:
        counts = _browse(pages, seed)
        _create_prompt_in_ui(pages, seed, prompt_name)
    except AssertionError as exc:
        failure = exc
    except PlaywrightError as exc:
        if NETWORK_CHANGED in exc.message:
            watch.network_changed = True
        shot = pages.screenshot("FAILED")
        failure = AssertionError(f"UI action failed on {pages.page.url}: {exc.message.strip()}; screenshot {shot}")
    finally:
        context.close()
    return pages, watch, counts, failure


def check_ui(url: str, username: str | None, password: str | None, artifacts_dir: Path,
             headers: dict[str, str] | None = None) -> dict:
    """Seed data through the API, then check the UI shows it in chromium; see the module's docstring.

    The user logs in with basic auth (username, password), or is who the headers say (the browser sends them
    with every request, as Google IAP's proxy does its signed header: username None).

    Returns what was seen: each page (its URL, seconds until it showed what it must, its screenshot), counts,
    requests and console messages by type, what was allowed and why, and the retries (see NETWORK_CHANGED)."""
    started = time.monotonic()
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    headers = dict(headers or {})
    identity: dict[str, Any] = {"extra_http_headers": headers} if headers else {}
    if username is not None:
        identity["http_credentials"] = {"username": username, "password": password or ""}
    api = _Api(url, username, password, headers)
    seed = _seed(api)
    retries: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for attempt in range(1, ATTEMPTS + 1):
                prompt_name = f"{seed.ui_prompt_name}-{attempt}"
                pages_dir = artifacts_dir if attempt == 1 else artifacts_dir / f"attempt-{attempt}"
                pages_dir.mkdir(exist_ok=True)
                pages, watch, counts, failure = _attempt(browser, url, identity, pages_dir, seed, prompt_name)
                if failure is None:
                    try:
                        _check_prompt_through_api(api, seed, prompt_name)
                    except AssertionError as exc:
                        failure = exc
                if failure is None and not watch.problems:
                    break
                lines = ([str(failure)] if failure else []) + [f"browser: {problem}" for problem in watch.problems]
                if not watch.network_changed or attempt == ATTEMPTS:
                    if retries:
                        lines.append(f"after {len(retries)} retries on {NETWORK_CHANGED}: {retries}")
                    raise AssertionError("MLflow UI check failed:\n  " + "\n  ".join(lines))
                retries.append(f"attempt {attempt}: " + "; ".join(lines)[:1000])
                time.sleep(RETRY_PAUSE_S)
        finally:
            browser.close()

    return {
        "url": url,
        "experiment_id": seed.experiment_id,
        "run_id": seed.run_id,
        "otel_trace_id": seed.trace_id,
        "ui_prompt": prompt_name,
        "pages": pages.seen,
        "counts": {**counts, "pages": len(pages.seen), "requests": watch.requests, "responses": watch.responses},
        "console_messages": watch.console_messages,
        "allowed": watch.allowed,
        "console_warnings": watch.console_warnings,
        "retries": retries,
        "seed_seconds": seed.timings["seed"],
        "seconds": round(time.monotonic() - started, 2),
    }


def main() -> int:
    """python ui_browser.py URL ARTIFACTS_DIR: check_ui from the command line (molecule secure, IAP mode).
    Who the user is comes from the environment only: UI_BROWSER_USERNAME and UI_BROWSER_PASSWORD, or
    UI_BROWSER_HEADERS (a JSON object of headers). Prints the result as JSON; exit 1 when the check fails."""
    import os
    import sys

    url, artifacts_dir = sys.argv[1:3]
    headers = json.loads(os.environ.get("UI_BROWSER_HEADERS", "{}"))
    try:
        seen = check_ui(url, os.environ.get("UI_BROWSER_USERNAME"), os.environ.get("UI_BROWSER_PASSWORD"),
                        Path(artifacts_dir), headers=headers)
    except AssertionError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps({"ok": True, **seen}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
