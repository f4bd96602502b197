#!/usr/bin/env python3
"""A client logging metrics through the load balancer, one request after the other, without retries.

    load_client.py run URL STATE STOP_FILE   (the admin password on stdin)
    load_client.py check URL STATE           (the admin password on stdin)

``run`` creates an experiment and a run, then sends one log-metric request after the other
(step 0, 1, 2, ...), PAUSE seconds apart, until STOP_FILE exists; each request is a new connection
through the balancer, sent once: any error or non-200 answer counts as failed. STATE records the run, the
acknowledged steps and every failure. ``check`` reads the metric history back through the
balancer and prints one JSON line: requests sent, failed, acknowledged, points verified and
acknowledged points missing. Standard library only (no client-side retries anywhere).
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

METRIC = "load"
TIMEOUT = 30
# Stop anyway after this long, so a hung roll cannot keep the client running forever.
MAX_SECONDS = 900
# Between two requests. Without a pause the client and the servers behind it kept one of the test
# machine's two cores busy for the whole roll (10,751 requests in 325 s). With it, about 10 requests
# a second (3,175 in a 308 s roll): any window in which the balancer sends a request to a VM that is
# not serving (a drain that does not drain, an undrain before the health gate) lasts seconds and is
# hit many times over.
PAUSE = 0.05


class Api:
    def __init__(self, url: str, password: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an HTTP URL: {url}")
        self.url = url.rstrip("/")
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (http(s) checked above)
            return json.loads(response.read() or b"{}")


def run(api: Api, state_path: Path, stop_file: Path) -> None:
    name = f"cluster-load-{int(time.time() * 1000)}"
    experiment_id = api.call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]
    run_id = api.call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]
    state = {"experiment_id": experiment_id, "run_id": run_id, "sent": 0, "acknowledged": [], "failures": []}
    started = time.monotonic()
    step = 0
    while not stop_file.exists() and time.monotonic() - started < MAX_SECONDS:
        body = {
            "run_id": run_id,
            "key": METRIC,
            "value": float(step),
            "timestamp": int(time.time() * 1000),
            "step": step,
        }
        state["sent"] += 1
        try:
            api.call("POST", "/api/2.0/mlflow/runs/log-metric", body)
            state["acknowledged"].append(step)
        except urllib.error.HTTPError as exc:
            reason = exc.read()[:200].decode(errors="replace")
            state["failures"].append({"step": step, "status": exc.code, "body": reason})
        except (OSError, ValueError) as exc:
            state["failures"].append({"step": step, "error": repr(exc)})
        step += 1
        if step % 5 == 0:
            state_path.write_text(json.dumps(state))
        time.sleep(PAUSE)
    state["elapsed"] = round(time.monotonic() - started, 1)
    state_path.write_text(json.dumps(state))


def check(api: Api, state_path: Path) -> dict:
    state = json.loads(state_path.read_text())
    stored: set[int] = set()
    token = ""
    while True:
        query = urllib.parse.urlencode({"run_id": state["run_id"], "metric_key": METRIC, "page_token": token})
        history = api.call("GET", f"/api/2.0/mlflow/metrics/get-history?{query}")
        stored |= {int(point["step"]) for point in history.get("metrics", [])}
        token = history.get("next_page_token", "")
        if not token:
            break
    acknowledged = set(state["acknowledged"])
    return {
        "sent": state["sent"],
        "failed": len(state["failures"]),
        "acknowledged": len(acknowledged),
        "verified": len(acknowledged & stored),
        "missing": len(acknowledged - stored),
        "elapsed_s": state.get("elapsed"),
        "first_failures": state["failures"][:5],
    }


def main() -> int:
    command, url, state = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    api = Api(url, sys.stdin.read().strip())
    if command == "run":
        run(api, state, Path(sys.argv[4]))
        return 0
    print(json.dumps(check(api, state)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
