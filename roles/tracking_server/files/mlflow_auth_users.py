#!/usr/bin/env python3
"""Manage MLflow basic-auth users idempotently through the auth REST API (standard library only).

Reads one JSON object on standard input (so no password reaches a command line):

    {"url": "http://127.0.0.1:5000",
     "admin": {"username": "admin", "password": "..."},
     "users": [{"name": "alice", "password": "...", "admin": false, "state": "present",
                "permissions": [{"experiment": "churn", "permission": "READ"}]}]}

Creates missing users, changes passwords that no longer authenticate, sets the
admin flag, grants experiment permissions, and deletes users whose state is
absent. Prints {"changed": [...], "revoked": [...]} (never a password); exits 1
on an API error. "revoked" names the users whose old credentials or admin flag a
server worker may still trust from its auth cache (MLflow drops a changed user
from the cache of the one worker that handled the change, not from the others).
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


class ApiError(Exception):
    pass


def call(
    url: str, method: str, path: str, auth: tuple[str, str], payload: dict | None = None, query: dict | None = None
) -> tuple[int, dict]:
    if query:
        path += "?" + urllib.parse.urlencode(query)
    body = json.dumps(payload).encode() if payload is not None else None
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(
        url.rstrip("/") + path,
        data=body,
        method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback URL from the play
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"raw": raw[:200].decode(errors="replace")}


def expect(status: int, body: dict, what: str, ok=(200,)) -> dict:
    if status not in ok:
        raise ApiError(f"{what}: HTTP {status} {body.get('message', body)}")
    return body


def experiment_id(url: str, admin: tuple[str, str], name: str) -> str:
    status, body = call(url, "GET", "/api/2.0/mlflow/experiments/get-by-name", admin, query={"experiment_name": name})
    if status == 404:
        created = expect(
            *call(url, "POST", "/api/2.0/mlflow/experiments/create", admin, {"name": name}), f"create experiment {name}"
        )
        return created["experiment_id"]
    return expect(status, body, f"get experiment {name}")["experiment"]["experiment_id"]


REVOKING = ("deleted ", "password of ", "admin flag of ")


def apply_user(url: str, admin: tuple[str, str], user: dict) -> list[str]:
    name = user["name"]
    changed: list[str] = []
    status, body = call(url, "GET", "/api/2.0/mlflow/users/get", admin, query={"username": name})
    exists = status == 200
    if status not in (200, 404):
        expect(status, body, f"get user {name}")
    if user.get("state", "present") == "absent":
        if exists:
            expect(*call(url, "DELETE", "/api/2.0/mlflow/users/delete", admin, {"username": name}), f"delete {name}")
            changed.append(f"deleted {name}")
        return changed
    if not exists:
        expect(
            *call(url, "POST", "/api/2.0/mlflow/users/create", admin, {"username": name, "password": user["password"]}),
            f"create {name}",
        )
        changed.append(f"created {name}")
        is_admin = False
    else:
        is_admin = bool(body.get("user", {}).get("is_admin"))
        probe, _ = call(url, "GET", "/api/2.0/mlflow/users/current", (name, user["password"]))
        if probe == 401:
            expect(
                *call(
                    url,
                    "PATCH",
                    "/api/2.0/mlflow/users/update-password",
                    admin,
                    {"username": name, "password": user["password"]},
                ),
                f"update password of {name}",
            )
            changed.append(f"password of {name}")
    if bool(user.get("admin", False)) != is_admin:
        expect(
            *call(
                url,
                "PATCH",
                "/api/2.0/mlflow/users/update-admin",
                admin,
                {"username": name, "is_admin": bool(user.get("admin", False))},
            ),
            f"update admin flag of {name}",
        )
        changed.append(f"admin flag of {name}")
    for grant in user.get("permissions", []):
        exp_id = experiment_id(url, admin, grant["experiment"])
        resource = {"username": name, "resource_type": "experiment", "resource_id": exp_id}
        status, body = call(url, "GET", "/api/3.0/mlflow/users/permissions/get", admin, query=resource)
        if status == 200 and body.get("permission") == grant["permission"]:
            continue
        expect(
            *call(
                url,
                "POST",
                "/api/3.0/mlflow/users/permissions/grant",
                admin,
                {**resource, "permission": grant["permission"]},
            ),
            f"grant {grant['permission']} to {name}",
        )
        changed.append(f"{grant['permission']} on {grant['experiment']} for {name}")
    return changed


def main() -> int:
    spec = json.load(sys.stdin)
    admin = (spec["admin"]["username"], spec["admin"]["password"])
    changed: list[str] = []
    revoked: list[str] = []
    try:
        for user in spec.get("users", []):
            changes = apply_user(spec["url"], admin, user)
            changed += changes
            if any(change.startswith(REVOKING) for change in changes):
                revoked.append(user["name"])
    except (ApiError, OSError, KeyError) as exc:
        print(json.dumps({"changed": changed, "revoked": revoked, "error": str(exc)}))
        return 1
    print(json.dumps({"changed": changed, "revoked": revoked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
