#!/usr/bin/env python3
"""Security probes against a deployed server, run on the VM (standard library only).

Reads a JSON object on standard input (credentials, IAP assertions), runs every
probe and prints {"results": [{"probe", "expected", "got", "ok"}], "failed": N}.
"""

import base64
import json
import re
import ssl
import sys
import urllib.error
import urllib.request

DIRECT = "http://127.0.0.1:5000"
PROXY = "https://127.0.0.1"
CTX = ssl._create_unverified_context()  # noqa: S323 - self-signed test certificate, loopback only


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=CTX))


def http(method, url, headers=None, body=None, auth=None):
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - loopback only
    try:
        with OPENER.open(req, timeout=30) as resp:  # noqa: S310 - loopback URLs built above
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def internal_token():
    """The token MLflow's server hands its job runner (_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN), read as root
    from the environment of one of its processes."""
    import glob

    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue
        for variable in variables:
            if variable.startswith(b"_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN="):
                return variable.split(b"=", 1)[1].decode()
    return ""


def main():
    cfg = json.load(sys.stdin)
    admin, reader = tuple(cfg["admin"]), tuple(cfg["reader"])
    tokens = cfg["tokens"]
    host = {"Host": cfg["server_name"]}
    results = []

    def probe(name, expected, got, detail=""):
        ok = got in expected if isinstance(expected, (list, tuple, set)) else got == expected
        results.append({"probe": name, "expected": expected if not isinstance(expected, set) else sorted(expected),
                        "got": got, "ok": ok, "detail": detail})

    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    probe("unauthenticated API", 401, http("GET", DIRECT + search)[0])
    probe("wrong password", 401, http("GET", DIRECT + search, auth=(admin[0], admin[1] + "x"))[0])
    probe("admin", 200, http("GET", DIRECT + search, auth=admin)[0])

    status, body, _ = http("GET", DIRECT + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=secure-probe",
                           auth=admin)
    experiment_id = json.loads(body)["experiment"]["experiment_id"] if status == 200 else "0"
    probe("READ user reads", 200, http("GET", f"{DIRECT}/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}",
                                       auth=reader)[0])
    probe("READ user cannot write", 403, http("POST", DIRECT + "/api/2.0/mlflow/runs/create", auth=reader,
                                              body={"experiment_id": experiment_id})[0])
    probe("bad Host header", 403, http("GET", DIRECT + search, headers={"Host": "evil.example"}, auth=admin)[0])
    probe("cross-origin POST", 403, http("POST", DIRECT + "/api/2.0/mlflow/experiments/create", auth=admin,
                                         headers={"Origin": "https://evil.example"}, body={"name": "cors-probe"})[0])

    for label, path in (("..", "../../../../etc/passwd"), ("url-encoded", "%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
                        ("double-encoded", "%252e%252e%252f%252e%252e%252fetc%252fpasswd"),
                        ("encoded slash", "..%2f..%2f..%2fetc%2fpasswd")):
        status, body, _ = http("GET", f"{DIRECT}/api/2.0/mlflow-artifacts/artifacts/{path}", auth=admin)
        leaked = b"root:x:0:0" in body
        probe(f"path traversal ({label})", "rejected", "rejected" if status != 200 and not leaked else f"HTTP {status}",
              f"HTTP {status}")

    status, _, headers = http("GET", "http://127.0.0.1/api/2.0/mlflow/experiments/search", headers=host)
    probe("plain HTTP redirected", 301, status, headers.get("Location", ""))
    probe("IAP: health without assertion", 200, http("GET", PROXY + "/health", headers=host)[0])
    probe("IAP: no assertion", 401, http("GET", PROXY + search, headers=host)[0])
    for label in ("forged", "expired", "wrong_audience", "wrong_issuer"):
        probe(f"IAP: {label} assertion", 401,
              http("GET", PROXY + search, headers={**host, "x-goog-iap-jwt-assertion": tokens[label]})[0])
    probe("IAP: valid assertion", 200,
          http("GET", PROXY + search, headers={**host, "x-goog-iap-jwt-assertion": tokens["valid"]})[0])
    probe("IAP identity is the MLflow user (EDIT on secure-probe)", 200,
          http("POST", PROXY + "/api/2.0/mlflow/runs/create", body={"experiment_id": experiment_id},
               headers={**host, "x-goog-iap-jwt-assertion": tokens["valid"]})[0])
    iap = {**host, "x-goog-iap-jwt-assertion": tokens["valid"]}
    _, page, _ = http("GET", PROXY + "/", headers=iap)
    scripts = re.findall(rb'src="([^"]+\.js)"', page)
    asset = "/" + scripts[0].decode().lstrip("./") if scripts else "/static-files/missing.js"
    status, body, headers = http("GET", PROXY + asset, headers={**iap, "Accept-Encoding": "gzip"})
    probe("UI assets gzipped by nginx", "gzip", headers.get("Content-Encoding", "none"),
          f"{asset}: HTTP {status}, {len(body)} bytes")
    probe("forged identity header straight to MLflow", 401,
          http("GET", DIRECT + search, headers={"X-Mlflow-Iap-User": "admin",
                                                "X-Mlflow-Ansible-Proxy-Token": "guess"})[0])

    # The server's jobs call the AI Gateway's routes (/gateway/) as the jobs identity, or with MLflow's
    # per-start token for the user who started them (mlflow_ansible_auth.py): both pass there (404: no
    # such endpoint, after authentication) and are refused everywhere else.
    chat = {"model": "secure-probe-missing-endpoint", "messages": [{"role": "user", "content": "hello"}]}
    jobs = tuple(cfg["jobs"])
    probe("jobs identity on the AI Gateway", 404, http("POST", DIRECT + "/gateway/mlflow/v1/chat/completions",
                                                        auth=jobs, body=chat)[0])
    probe("jobs identity on the API", 401, http("GET", DIRECT + search, auth=jobs)[0])
    probe("jobs identity, wrong password, on the AI Gateway", 401,
          http("POST", DIRECT + "/gateway/mlflow/v1/chat/completions", auth=(jobs[0], jobs[1] + "x"), body=chat)[0])
    token = internal_token()
    probe("MLflow's job token found in the server's environment", True, bool(token))
    probe("MLflow's job token for the admin on the AI Gateway", 404,
          http("POST", DIRECT + "/gateway/mlflow/v1/chat/completions", auth=(admin[0], token), body=chat)[0])
    # Authenticated as the reader (403, not 401), who may use no endpoint: the job acts as its user.
    probe("MLflow's job token for the reader on the AI Gateway", 403,
          http("POST", DIRECT + "/gateway/mlflow/v1/chat/completions", auth=(reader[0], token), body=chat)[0])
    probe("MLflow's job token on the API", 401, http("GET", DIRECT + search, auth=(admin[0], token))[0])
    probe("MLflow's job token on the UI's job API", 401,
          http("GET", DIRECT + "/ajax-api/3.0/jobs/0", auth=(admin[0], token))[0])

    http("POST", DIRECT + "/api/2.0/mlflow/registered-models/create", auth=admin, body={"name": "secure-probe-model"})
    status, body, _ = http("POST", DIRECT + "/api/2.0/mlflow/model-versions/create", auth=admin,
                           body={"name": "secure-probe-model", "source": "file:///etc"})
    probe("model version from file:///etc", 400, status, body[:120].decode(errors="replace"))

    print(json.dumps({"results": results, "failed": sum(not r["ok"] for r in results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
