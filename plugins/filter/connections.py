"""Filters that count the database connections MLflow tracking servers may open, and check the total against what
the database server allows (the preflight, and the deploy with the server's real limit).

How MLflow 3.17 opens them (mlflow/store/db/utils.py create_sqlalchemy_engine, and each store's engine cache):
every server process (a uvicorn or gunicorn worker; under split both sides' workers) holds one SQLAlchemy
engine per store and URI - tracking, model registry, jobs (job execution on), the basic-auth app's - plus one
per read-replica store when the read replica is on the primary's server. Each engine's pool keeps up to
pool_size connections and opens max_overflow more under load. The job runner's long-lived processes add their
own: executor engine, the runner (jobs) and the periodic-tasks consumer (tracking, jobs); huey engine, the
runner (jobs), a consumer per job kind (jobs) and the periodic-tasks consumer (tracking, jobs). The processes
that run one job each, while it runs, are not counted.
"""

from __future__ import annotations

DOCUMENTATION = ""

# SQLAlchemy's QueuePool defaults, which MLflow keeps when its variables are unset or 0 (it passes
# MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW only when it is not 0: an overflow of 0 cannot be asked for).
SQLALCHEMY_POOL_SIZE = 5
SQLALCHEMY_MAX_OVERFLOW = 10
# When the worker count is left to the cores (0), the preflight does not know them yet: at least 2.
MIN_WORKERS = 2
# Under split the REST API's gunicorn workers left to the cores are one fewer than the cores: at least 1.
MIN_API_WORKERS = 1
# Engines of the job runner's long-lived processes, per job engine (see the module's docstring):
# executor: runner 1 + periodic consumer 2; huey: runner 1 + 7 job-kind consumers + periodic consumer 2.
JOB_ENGINES = {"executor": 3, "huey": 10}


def _bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _int(value) -> int:
    return int(value or 0)


def db_connections(settings: dict) -> dict:
    """The connections one server may open on its database (see db_connections.yml for the keys)."""
    s = settings
    tracking = s.get("mode", "tracking") == "tracking"
    jobs = tracking and _bool(s.get("job_execution"))
    engines = []
    if tracking:
        engines += ["tracking", "model registry"]
        if _bool(s.get("replica_on_primary")):
            engines += ["tracking read replica", "model registry read replica"]
        if jobs:
            engines.append("jobs")
    if s.get("auth") in ("basic", "oidc"):
        engines.append("auth")
    split = s.get("http_server") == "split"
    workers = _int(s.get("workers"))
    # Under split the uvicorn side keeps one worker unless told otherwise (tasks/install.yml).
    known = workers > 0 or split
    workers = workers if workers > 0 else 1 if split else MIN_WORKERS
    # Under split, gunicorn's workers serve the REST API without the job store (the jobs API is uvicorn's).
    api_engines = [engine for engine in engines if engine != "jobs"] if split else []
    api_workers = _int(s.get("api_workers")) if split else 0
    api_known = api_workers > 0
    api_workers = api_workers if api_known or not split else MIN_API_WORKERS
    job_engines = JOB_ENGINES.get(str(s.get("job_engine") or "executor"), JOB_ENGINES["huey"]) if jobs else 0
    pool_size = _int(s.get("pool_size")) or SQLALCHEMY_POOL_SIZE
    max_overflow = _int(s.get("max_overflow")) or SQLALCHEMY_MAX_OVERFLOW
    per_engine = pool_size + max_overflow
    count = workers * len(engines) + api_workers * len(api_engines) + job_engines
    text = (f"{'' if known else 'at least '}{workers} workers x {len(engines)} engines"
            f" ({', '.join(engines) or 'none'})")
    if split:
        text += (f" + {'' if api_known else 'at least '}{api_workers} REST API (gunicorn) workers x"
                 f" {len(api_engines)} engines")
    if job_engines:
        text += f" + {job_engines} engines of the job runner ({s.get('job_engine') or 'executor'})"
    text += f" = {count} engines x ({pool_size} + {max_overflow}) = {count * per_engine}"
    return {
        "host": s.get("host", ""), "workers": workers, "workers_known": known, "engines": engines,
        "job_engines": job_engines, "engine_count": count, "pool_size": pool_size, "max_overflow": max_overflow,
        "connections": count * per_engine, "text": text,
    }


def db_connection_budget(
    servers: list, max_connections, reserved=0, workers: dict | None = None, api_workers: dict | None = None
) -> dict:
    """The servers of one database against its max_connections less the reserved ones (see
    db_connection_budget.yml)."""
    counts = []
    for settings in servers:
        settings = dict(settings)
        if workers and _int(workers.get(settings.get("host"))) > 0:
            settings["workers"] = workers[settings["host"]]
        if api_workers and _int(api_workers.get(settings.get("host"))) > 0:
            settings["api_workers"] = api_workers[settings["host"]]
        counts.append(db_connections(settings))
    total = sum(count["connections"] for count in counts)
    available = _int(max_connections) - _int(reserved)
    lines = "; ".join(f"{count['host'] or 'server'}: {count['text']}" for count in counts)
    limit = f"max_connections {_int(max_connections)}" + (f" - {_int(reserved)} reserved" if _int(reserved) else "")
    return {
        "total": total, "available": available, "fits": total <= available, "servers": counts,
        "text": f"{lines}; in all {total} connections against {available} ({limit})",
    }


class FilterModule:
    """mlflow_ansible.tracking connection-count filters."""

    def filters(self):
        return {"db_connections": db_connections, "db_connection_budget": db_connection_budget}
