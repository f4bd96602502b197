"""The backend-URI filters the roles' preflight uses (plugins/filter/validators.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "validators", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "validators.py"
)
validators = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(validators)


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql+psycopg2://mlflow:pw@10.0.0.3:5432/mlflow?sslmode=require",
        "postgresql+psycopg2://mlflow:@/mlflow?host=/cloudsql/p:r:i",  # unix socket, no password needed
        "mysql+pymysql://mlflow:pw@mariadb:3306/mlflow?charset=utf8mb4",
        "mysql+pymysql://mlflow:pw@/mlflow?unix_socket=/srv/mysqld/mysqld.sock&charset=utf8mb4",
        "sqlite:////var/lib/mlflow/mlflow.db",
    ],
)
def test_usable_uris(uri):
    assert validators.backend_uri_problems(uri) == []


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("", "the URI is empty"),
        ("mssql://u:p@db/mlflow", "the scheme is 'mssql'"),
        ("postgresql://u@db/mlflow", "the URI carries no password"),
        ("mysql+pymysql://u:p@/mlflow?charset=utf8mb4", "the URI names no host and no unix socket"),
        ("mysql+pymysql://u:p@/mlflow?unix_socket=relative.sock", "the URI names no host and no unix socket"),
        ("postgresql://:p@db/mlflow", "the URI names no user"),
        ("postgresql://u:p@db/", "the URI names no database"),
        ("sqlite:///mlflow.db", "a SQLite URI must name an absolute file path"),
    ],
)
def test_unusable_uris_name_the_problem(uri, problem):
    assert problem in "; ".join(validators.backend_uri_problems(uri))


def test_password_not_required_with_iam_authentication():
    uri = "postgresql+psycopg2://sa-name@my-project.iam:@127.0.0.1:5432/mlflow"
    assert "the URI carries no password" in validators.backend_uri_problems(uri)
    assert validators.backend_uri_problems(uri, password_required=False) == []


def test_password_is_never_echoed():
    problems = validators.backend_uri_problems("postgresql://u:s3cret-pw@db:99999/mlflow")
    assert problems and not any("s3cret-pw" in p for p in problems)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("mysql://u:p@h/db", "mysql+pymysql://u:p@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:////var/lib/mlflow/mlflow.db", "sqlite:////var/lib/mlflow/mlflow.db"),
    ],
)
def test_driver_uri_names_the_installed_driver(given, expected):
    assert validators.driver_uri(given) == expected
