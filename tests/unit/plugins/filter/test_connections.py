"""The connection count of MLflow servers against their database's max_connections (plugins/filter/connections.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "connections", Path(__file__).resolve().parents[4] / "plugins" / "filter" / "connections.py"
)
_connections = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_connections)
db_connections = _connections.db_connections
db_connection_budget = _connections.db_connection_budget

# The role's defaults on a 2-core VM: basic auth, the executor job runner, pool 3 + overflow 1.
DEFAULT = {"host": "vm1", "workers": 2, "mode": "tracking", "auth": "basic", "job_execution": True,
           "job_engine": "executor", "replica_on_primary": False, "pool_size": 3, "max_overflow": 1}


def test_a_default_server_counts_its_stores_and_job_runner():
    count = db_connections(DEFAULT)
    assert count["engines"] == ["tracking", "model registry", "jobs", "auth"]
    assert (count["engine_count"], count["connections"]) == (2 * 4 + 3, 44)
    assert count["text"] == ("2 workers x 4 engines (tracking, model registry, jobs, auth) + 3 engines of the job "
                             "runner (executor) = 11 engines x (3 + 1) = 44")


def test_what_adds_engines_and_what_removes_them():
    assert db_connections({**DEFAULT, "replica_on_primary": True})["engine_count"] == 2 * 6 + 3
    assert db_connections({**DEFAULT, "job_engine": "huey"})["engine_count"] == 2 * 4 + 10
    assert db_connections({**DEFAULT, "job_execution": "false"})["engine_count"] == 2 * 3
    bare = db_connections({**DEFAULT, "auth": "none", "job_execution": False})
    assert bare["engines"] == ["tracking", "model registry"]
    # An artifacts-only server reaches the database for its users only.
    only = db_connections({**DEFAULT, "mode": "artifacts_only"})
    assert (only["engines"], only["job_engines"], only["connections"]) == (["auth"], 0, 2 * 4)


def test_zero_is_sqlalchemys_default_and_unknown_workers_count_as_two():
    count = db_connections({**DEFAULT, "pool_size": 0, "max_overflow": "0", "workers": "0"})
    assert (count["pool_size"], count["max_overflow"], count["workers"], count["workers_known"]) == (5, 10, 2, False)
    assert count["connections"] == 11 * 15
    assert count["text"].startswith("at least 2 workers")


def test_two_default_replicas_fit_a_hundred_connections_three_do_not():
    two = db_connection_budget([DEFAULT, {**DEFAULT, "host": "vm2"}], 100, 3)
    assert (two["total"], two["available"], two["fits"]) == (88, 97, True)
    assert two["text"].endswith("in all 88 connections against 97 (max_connections 100 - 3 reserved)")
    assert two["text"].startswith("vm1: 2 workers") and "; vm2: 2 workers" in two["text"]
    three = db_connection_budget([DEFAULT, {**DEFAULT, "host": "vm2"}, {**DEFAULT, "host": "vm3"}], 100, 3)
    assert (three["total"], three["fits"]) == (132, False)
    # A total exactly at the limit fits; MySQL reserves none.
    assert db_connection_budget([DEFAULT, {**DEFAULT, "host": "vm2"}], 88)["fits"] is True
    assert db_connection_budget([DEFAULT, {**DEFAULT, "host": "vm2"}], 87)["fits"] is False


def test_the_settled_worker_counts_replace_the_noted_ones():
    noted = [{**DEFAULT, "workers": 0}, {**DEFAULT, "host": "vm2", "workers": 0}]
    assert db_connection_budget(noted, 100, 3)["total"] == 88
    settled = db_connection_budget(noted, 100, 3, workers={"vm1": 8, "vm2": 0})
    assert [server["workers"] for server in settled["servers"]] == [8, 2]
    assert settled["total"] == (8 * 4 + 3) * 4 + 44 and not settled["fits"]
    assert settled["text"].startswith("vm1: 8 workers") and "vm2: at least 2 workers" in settled["text"]


def test_split_counts_both_sides_and_no_job_store_on_the_api_side():
    """Under split the uvicorn side has one worker by default (known), the REST API's gunicorn workers
    at least 2 when left to the cores, and those hold no job store engine."""
    count = db_connections({"http_server": "split", "workers": 0, "api_workers": 0, "auth": "basic",
                            "job_execution": True, "job_engine": "executor", "pool_size": 3, "max_overflow": 1})
    # uvicorn 1 x 4 (tracking, registry, jobs, auth) + gunicorn 1 x 3 + job runner 3 = 10 engines x 4
    assert count["engine_count"] == 10 and count["connections"] == 40
    assert "1 workers x 4 engines" in count["text"]
    assert "at least 1 REST API (gunicorn) workers x 3 engines" in count["text"]
    settled = db_connection_budget(
        [{"host": "vm1", "http_server": "split", "auth": "basic", "job_execution": True,
          "pool_size": 3, "max_overflow": 1}],
        100, 3, api_workers={"vm1": 4})
    assert settled["total"] == (1 * 4 + 4 * 3 + 3) * 4
    plain = db_connections({"http_server": "uvicorn", "workers": 0, "api_workers": 8, "auth": "basic",
                            "job_execution": True, "pool_size": 3, "max_overflow": 1})
    assert plain["engine_count"] == 2 * 4 + 3, "api_workers count only under split"
