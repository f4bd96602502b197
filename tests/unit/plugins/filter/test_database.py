"""The database filters (plugins/filter/database.py): the port, URI and name the cloudsql_client and
tracking_server roles derive from the cloudsql_client_* settings, checked against SQLAlchemy's own parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

_SPEC = importlib.util.spec_from_file_location(
    "database", Path(__file__).resolve().parents[4] / "plugins" / "filter" / "database.py"
)
database = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(database)

PG = {"engine": "postgresql", "host": "10.0.0.5", "port": 0, "unix_socket": "", "user": "mlflow",
      "password": "p@ss/w:rd?#%", "database": "mlflow", "sslmode": "require", "proxy_port": 0, "instance": ""}


@pytest.mark.parametrize(("settings", "port"), [
    ({"engine": "postgresql"}, 5432),
    ({"engine": "mysql"}, 3306),
    ({"engine": "postgresql", "port": "6543"}, 6543),
    ({"engine": "postgresql", "port": 0, "proxy_port": "5433"}, 5433),
    ({"engine": "mysql", "port": 3307, "proxy_port": 5433}, 3307),
])
def test_port(settings, port):
    assert database.database_port(settings) == port


def test_postgresql_over_tcp_keeps_every_character_of_the_password():
    uri = database.database_uri(PG)
    assert uri == "postgresql+psycopg2://mlflow:p%40ss%2Fw%3Ard%3F%23%25@10.0.0.5:5432/mlflow?sslmode=require"
    parsed = make_url(uri)
    assert (parsed.drivername, parsed.host, parsed.port) == ("postgresql+psycopg2", "10.0.0.5", 5432)
    assert parsed.database == "mlflow"
    assert (parsed.username, parsed.password) == ("mlflow", "p@ss/w:rd?#%")
    assert dict(parsed.query) == {"sslmode": "require"}


def test_postgresql_over_a_unix_socket():
    uri = database.database_uri({**PG, "unix_socket": "/cloudsql/p:r:i", "password": "pw"})
    assert uri == "postgresql+psycopg2://mlflow:pw@/mlflow?host=/cloudsql/p:r:i"
    assert make_url(uri).query == {"host": "/cloudsql/p:r:i"}


def test_postgresql_through_the_auth_proxy_uses_its_port():
    uri = database.database_uri({**PG, "host": "127.0.0.1", "proxy_port": 5433, "password": "", "sslmode": "disable"})
    assert uri == "postgresql+psycopg2://mlflow:@127.0.0.1:5433/mlflow?sslmode=disable"


@pytest.mark.parametrize(("sslmode", "query"), [
    ("prefer", {"charset": "utf8mb4"}),
    ("disable", {"charset": "utf8mb4"}),
    ("require", {"charset": "utf8mb4", "ssl_verify_cert": "false", "ssl_check_hostname": "false"}),
    ("verify-ca", {"charset": "utf8mb4", "ssl_verify_cert": "true", "ssl_check_hostname": "false"}),
    ("verify-full", {"charset": "utf8mb4", "ssl_verify_cert": "true", "ssl_check_hostname": "true"}),
])
def test_mysql_over_tcp_with_each_sslmode(sslmode, query):
    uri = database.database_uri({**PG, "engine": "mysql", "host": "mariadb", "password": "pw", "sslmode": sslmode})
    parsed = make_url(uri)
    assert (parsed.drivername, parsed.host, parsed.port) == ("mysql+pymysql", "mariadb", 3306)
    assert dict(parsed.query) == query


def test_mysql_over_a_unix_socket():
    uri = database.database_uri({**PG, "engine": "mysql", "unix_socket": "/srv/mysqld.sock", "password": "pw"})
    assert uri == "mysql+pymysql://mlflow:pw@/mlflow?unix_socket=/srv/mysqld.sock&charset=utf8mb4"


def test_an_unknown_engine_is_named():
    with pytest.raises(ValueError, match="'oracle'"):
        database.database_uri({**PG, "engine": "oracle"})


@pytest.mark.parametrize(("settings", "name"), [
    (PG, "10.0.0.5-5432-mlflow"),
    ({**PG, "unix_socket": "/cloudsql/p:r:i"}, "p:r:i-5432-mlflow"),
    ({**PG, "proxy_port": 5433, "instance": "proj:europe-west1:db"}, "proj-europe-west1-db-mlflow"),
    ({**PG, "engine": "mysql", "host": "mariadb", "database": "runs"}, "mariadb-3306-runs"),
])
def test_database_id(settings, name):
    assert database.database_id(settings) == name


@pytest.mark.parametrize(("backend", "auth"), [
    ("postgresql+psycopg2://mlflow:p%40ss@10.0.0.5:5432/mlflow?sslmode=require",
     "postgresql+psycopg2://mlflow:p%40ss@10.0.0.5:5432/mlflow_auth?sslmode=require"),
    ("postgresql+psycopg2://mlflow:pw@/mlflow?host=/cloudsql/p:r:i",
     "postgresql+psycopg2://mlflow:pw@/mlflow_auth?host=/cloudsql/p:r:i"),
    ("mysql+pymysql://mlflow:pw@mariadb:3306/mlflow", "mysql+pymysql://mlflow:pw@mariadb:3306/mlflow_auth"),
    ("sqlite:////var/lib/mlflow/mlflow.db", "sqlite:////var/lib/mlflow/mlflow_auth.db"),
])
def test_auth_uri(backend, auth):
    assert database.auth_uri(backend, "mlflow_auth", "/var/lib/mlflow/") == auth
    assert make_url(auth).password == make_url(backend).password
