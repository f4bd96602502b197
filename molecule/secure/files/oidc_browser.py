#!/usr/bin/env python3
"""Single sign-on in a real browser: Debian's chromium through Playwright, against the VM's HTTPS port and the
OpenID Connect provider stand-in, their names mapped to their test-network addresses (no /etc/hosts change).

    oidc_browser.py IDP_DIR VM_IP IDP_IP STATE_DIR logins     the users' logins and what each may do
    oidc_browser.py IDP_DIR VM_IP IDP_IP STATE_DIR refused U  U's login is refused (after a change at the provider)
    oidc_browser.py IDP_DIR VM_IP IDP_IP STATE_DIR session    the session saved by `logins` still works (or not)

Each prints {"results": [{"probe", "expected", "got", "ok"}], "failed": N, "retried": {"steps": N, "passes": [...]}}.
The API calls run as fetch() from a page of the server's own origin, with the session cookie the login left: what the
UI itself does.

Chromium fails every request in flight with net::ERR_NETWORK_CHANGED when the host's network interfaces change,
which Docker does whenever a container or network on this machine starts or stops (another CI lane's testbed). A
step (a login, a page's load, an API call) that failed after such a change is done again, up to STEP_ATTEMPTS times;
a pass whose probes still failed after one is done again from its start in fresh browser contexts, up to ATTEMPTS
passes. A failure without a network change is reported as it is.
"""

import json
import sys
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

MLFLOW = "https://mlflow.test"
CHROMIUM = "/usr/bin/chromium"
FETCH = """async ([method, path, body]) => {
  const init = {method, headers: {"Content-Type": "application/json"}};
  if (body !== null) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  return response.status;
}"""
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
ATTEMPTS = 4
RETRY_PAUSE_S = 5
STEP_ATTEMPTS = 6
STEP_PAUSE_S = 2


class Watch:
    """How many requests Chromium failed because the host's network changed (and how many there were when the last
    page was loaded), and how many steps were done again."""

    changes = 0
    loaded = 0
    steps_retried = 0

    @classmethod
    def on_request_failed(cls, request) -> None:
        if NETWORK_CHANGED in (request.failure or ""):
            cls.changes += 1


class NetworkChanged(Exception):
    """A navigation that ended on Chromium's error page after the network changed (no exception of its own)."""


def new_context(browser, **kwargs):
    context = browser.new_context(ignore_https_errors=True, **kwargs)
    context.on("requestfailed", Watch.on_request_failed)
    return context


def retrying(step):
    """step(), done again when it failed after the host's network changed under it."""
    for attempt in range(1, STEP_ATTEMPTS + 1):
        seen = Watch.changes
        try:
            return step()
        except (PlaywrightError, NetworkChanged) as exc:
            hiccup = isinstance(exc, NetworkChanged) or NETWORK_CHANGED in exc.message or Watch.changes > seen
            if attempt == STEP_ATTEMPTS or not hiccup:
                raise
        Watch.steps_retried += 1
        time.sleep(STEP_PAUSE_S)
    raise AssertionError("unreachable")


class Probes:
    def __init__(self):
        self.results = []

    def expect(self, probe, expected, got):
        ok = got in expected if isinstance(expected, (list, tuple)) else got == expected
        self.results.append({"probe": probe, "expected": expected, "got": got, "ok": ok})

    def failed(self) -> int:
        return sum(not r["ok"] for r in self.results)

    def report(self, retried: dict) -> None:
        print(json.dumps({"results": self.results, "failed": self.failed(), "retried": retried}))


def users(idp_dir: Path) -> dict:
    return {u["username"]: u for u in json.loads((idp_dir / "config.json").read_text())["users"]}


def api(page, method: str, path: str, body=None) -> int:
    def call():
        if not page.url.startswith(MLFLOW):
            page.goto(f"{MLFLOW}/health")
        return page.evaluate(FETCH, [method, path, body])

    return retrying(call)


def goto(page, url: str) -> None:
    retrying(lambda: page.goto(url))


def shows(page, text: str, screenshot: Path):
    """Whether the page shows text within two minutes; else where it is and what it shows (and a screenshot). The
    page is loaded again when the network changed since it was (its scripts may never have arrived)."""
    deadline = time.monotonic() + 120
    loaded = Watch.loaded
    while True:
        try:
            page.wait_for_selector(f"text={text}", timeout=5000)
            return True
        except PlaywrightTimeout:
            if time.monotonic() >= deadline:
                break
        if Watch.changes > loaded:
            loaded = Watch.changes
            Watch.steps_retried += 1
            retrying(page.reload)
    page.screenshot(path=str(screenshot))
    return f"{page.url} {page.title()!r}: {page.inner_text('body')[:300]!r}"


def login(context, user: dict, password: str | None = None):
    """Open the UI: the server sends the browser to the provider's form; sign in there. Returns the page, where the
    browser landed. Done again from a new page without cookies when the network changed under it."""
    pages = []

    def attempt():
        context.clear_cookies()
        page = context.new_page()
        pages.append(page)
        Watch.loaded = Watch.changes
        page.goto(f"{MLFLOW}/")
        page.wait_for_selector("#username", timeout=120000)
        page.fill("#username", user["username"])
        page.fill("#password", password or user["password"])
        page.click("#submit")
        page.wait_for_load_state("networkidle", timeout=120000)
        if page.url.startswith("chrome-error://"):
            raise NetworkChanged(page.url)
        return page

    page = retrying(attempt)
    for other in pages[:-1]:
        other.close()
    return page


def logins(browser, idp_dir: Path, state_dir: Path, probes: Probes) -> None:
    people = users(idp_dir)
    experiment = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=secure-probe"

    # bob: in mlflow and analysts (READ on secure-probe).
    context = new_context(browser)
    page = login(context, people["bob"])
    probes.expect("bob lands back in the MLflow UI", True, page.url.startswith(MLFLOW))
    probes.expect("bob sees the MLflow UI's experiments", True, shows(page, "Experiments", state_dir / "bob-ui.png"))
    probes.expect("bob reads secure-probe", 200, api(page, "GET", experiment))
    probes.expect("bob may not create an experiment", 403,
                  api(page, "POST", "/api/2.0/mlflow/experiments/create", {"name": f"bob-{time.time_ns()}"}))
    experiment_id = retrying(lambda: page.evaluate(
        "async (p) => (await (await fetch(p)).json()).experiment.experiment_id", experiment))
    probes.expect("bob may not log a run in secure-probe", 403,
                  api(page, "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}))
    goto(page, f"{MLFLOW}/logout")
    page.wait_for_load_state("networkidle", timeout=60000)
    probes.expect("bob's session ends at logout", 401, api(page, "GET", experiment))
    context.close()

    # A wrong password stays at the provider's form.
    context = new_context(browser)
    page = login(context, people["bob"], password="not-" + people["bob"]["password"])
    probes.expect("a wrong password is refused by the provider", True,
                  page.url.startswith("https://idp.test/") and page.locator("#error").count() == 1)
    context.close()

    # olga: in no group that may log in.
    context = new_context(browser)
    page = login(context, people["olga"])
    probes.expect("olga (no allowed group) gets no session", 401, api(page, "GET", experiment))
    context.close()

    # carol: only in mlflow; the basic-auth user carol@example.test's EDIT on secure-probe was carried over.
    context = new_context(browser)
    page = login(context, people["carol"])
    probes.expect("carol keeps the grant her basic-auth user had (EDIT: logs a run)", 200,
                  api(page, "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}))
    probes.expect("carol may not read ci-runs (no grant)", 403,
                  api(page, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=ci-runs"))
    context.close()

    # alice: an admin; her session is kept for the restart check.
    context = new_context(browser)
    page = login(context, people["alice"])
    probes.expect("alice (admin) creates an experiment", 200,
                  api(page, "POST", "/api/2.0/mlflow/experiments/create", {"name": f"alice-{time.time_ns()}"}))
    state = context.storage_state()
    state["cookies"] = [c for c in state["cookies"] if c["domain"].lstrip(".") == "mlflow.test"]  # not the provider's
    (state_dir / "alice-session.json").write_text(json.dumps(state))
    probes.expect("alice's session is a cookie of the server", True, len(state["cookies"]) > 0)
    context.close()


def refused(browser, idp_dir: Path, name: str, probes: Probes) -> None:
    context = new_context(browser)
    page = login(context, users(idp_dir)[name])
    probes.expect(f"{name}'s login is refused now", 401,
                  api(page, "GET", "/api/2.0/mlflow/experiments/search?max_results=1"))
    context.close()


def session(browser, state_dir: Path, probes: Probes) -> None:
    state = json.loads((state_dir / "alice-session.json").read_text())
    context = new_context(browser, storage_state=state)
    page = context.new_page()
    probes.expect("alice's session survives the server's restart", 200,
                  api(page, "GET", "/api/2.0/mlflow/experiments/search?max_results=1"))
    context.close()
    for cookie in state["cookies"]:
        cookie["value"] = cookie["value"][:-4] + ("AAAA" if not cookie["value"].endswith("AAAA") else "BBBB")
    context = new_context(browser, storage_state=state)
    page = context.new_page()
    probes.expect("a tampered session cookie is refused", 401,
                  api(page, "GET", "/api/2.0/mlflow/experiments/search?max_results=1"))
    context.close()


def run_pass(browser, idp_dir: Path, state_dir: Path, action: str, probes: Probes) -> None:
    try:
        if action == "logins":
            logins(browser, idp_dir, state_dir, probes)
        elif action == "refused":
            refused(browser, idp_dir, sys.argv[6], probes)
        else:
            session(browser, state_dir, probes)
    except (PlaywrightError, NetworkChanged) as exc:
        if NETWORK_CHANGED in str(exc):
            Watch.changes += 1
        probes.expect("the pass runs to its end", "no browser error", str(exc).strip()[:500])


def main() -> None:
    idp_dir, vm_ip, idp_ip, state_dir, action = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    idp_dir, state_dir = Path(idp_dir), Path(state_dir)
    rules = f"--host-resolver-rules=MAP mlflow.test {vm_ip},MAP idp.test {idp_ip}"
    retried = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", rules])
        try:
            for attempt in range(1, ATTEMPTS + 1):
                probes = Probes()
                seen = Watch.changes
                run_pass(browser, idp_dir, state_dir, action, probes)
                if not probes.failed() or Watch.changes == seen or attempt == ATTEMPTS:
                    break
                retried.append({"pass": attempt, "why": NETWORK_CHANGED,
                                "failed": [r["probe"] for r in probes.results if not r["ok"]]})
                time.sleep(RETRY_PAUSE_S)
        finally:
            browser.close()
    probes.report({"steps": Watch.steps_retried, "passes": retried})


if __name__ == "__main__":
    main()
