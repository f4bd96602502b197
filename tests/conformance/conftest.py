"""Differential client conformance: the same tests, with the real ``mlflow`` client and CLI, against a
plain-recipe ``mlflow server`` and against our deployment, in one run.

Targets come from the environment; a target whose URL is not set is skipped:

    MLFLOW_CONFORMANCE_PLAIN_URL            a plain ``mlflow server`` (no auth), e.g. http://127.0.0.1:5951
    MLFLOW_CONFORMANCE_OURS_URL             our deployment, e.g. https://mlflow.example.com
    MLFLOW_CONFORMANCE_OURS_USERNAME        basic-auth user of ours (an admin: a refusal creates a user)
    MLFLOW_CONFORMANCE_OURS_PASSWORD
    MLFLOW_CONFORMANCE_OURS_INSECURE_TLS    true: do not verify the TLS certificate (self-signed sandbox)
    MLFLOW_CONFORMANCE_OURS_CA_BUNDLE       a CA bundle to verify the certificate with instead
    (and the same _USERNAME/_PASSWORD/_INSECURE_TLS/_CA_BUNDLE for PLAIN, rarely needed)

Every call that works on plain must work on ours; the differences are the refusals listed in
refusals.py, which checks each of them on both targets.

Run: pytest tests/conformance (add -n 2 for pytest-xdist). A whole-repository run with neither URL set leaves
the package out; every test carries the marker ``conformance``.

The MLflow client keeps process-wide state (tracking URI, credentials read from the environment,
active run and experiment, the tracer provider). The ``target`` fixture sets all of it for one test and
resets it afterwards, so tests never share it across targets; under pytest-xdist every worker is its own
process. Tests are independent and re-runnable: each makes its own uniquely named objects.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

HERE = Path(__file__).resolve().parent
TARGET_NAMES = ("plain", "ours")
ENV_PREFIX = "MLFLOW_CONFORMANCE_"
# Client variables the suite sets per target: none may leak from the developer's shell into a target.
CLIENT_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
    "MLFLOW_ACTIVE_MODEL_ID",
)
# The same for every target: no telemetry, no prompt to open a browser, traces exported synchronously (a test
# reads its trace back at once; the async queue would also outlive the test's target).
COMMON_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
    "GIT_PYTHON_REFRESH": "quiet",
}


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Target:
    """One server under test: where it is, how to authenticate, and how to build a client for it."""

    name: str
    url: str
    username: str | None = None
    password: str | None = None
    insecure_tls: bool = False
    ca_bundle: str | None = None
    _session: requests.Session = field(default_factory=requests.Session, repr=False, compare=False)

    @classmethod
    def from_environ(cls, name: str, environ: dict[str, str] | os._Environ = os.environ) -> Target | None:
        prefix = f"{ENV_PREFIX}{name.upper()}_"
        url = (environ.get(prefix + "URL") or "").strip().rstrip("/")
        if not url:
            return None
        return cls(
            name=name,
            url=url,
            username=environ.get(prefix + "USERNAME") or None,
            password=environ.get(prefix + "PASSWORD") or None,
            insecure_tls=_flag(environ.get(prefix + "INSECURE_TLS")),
            ca_bundle=environ.get(prefix + "CA_BUNDLE") or None,
        )

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password or "") if self.username else None

    @property
    def verify(self) -> bool | str:
        if self.insecure_tls:
            return False
        return self.ca_bundle or True

    def env(self) -> dict[str, str]:
        """The client environment for this target (MLFLOW_TRACKING_* and the suite's common settings)."""
        env = dict(COMMON_ENV, MLFLOW_TRACKING_URI=self.url, MLFLOW_REGISTRY_URI=self.url)
        if self.username:
            env["MLFLOW_TRACKING_USERNAME"] = self.username
            env["MLFLOW_TRACKING_PASSWORD"] = self.password or ""
        if self.insecure_tls:
            env["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
        elif self.ca_bundle:
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = self.ca_bundle
        return env

    def subprocess_env(self) -> dict[str, str]:
        """This process's environment without any other target's client variables, plus this target's."""
        env = {key: value for key, value in os.environ.items() if key not in CLIENT_VARIABLES}
        env.update(self.env())
        return env

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def request(
        self, method: str, path: str, *, credentials: bool = True, timeout: float = 60, **kwargs: Any
    ) -> requests.Response:
        """A raw HTTP request to this target (path from the server root), by default with its credentials."""
        if credentials and self.auth and "auth" not in kwargs:
            kwargs["auth"] = self.auth
        kwargs.setdefault("verify", self.verify)
        return self._session.request(method, self.url + path, timeout=timeout, **kwargs)

    def api(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        """A REST call: endpoint relative to /api/2.0/mlflow/ (e.g. "runs/get")."""
        return self.request(method, "/api/2.0/mlflow/" + endpoint.lstrip("/"), **kwargs)

    def close(self) -> None:
        self._session.close()


def configured_targets() -> dict[str, Target | None]:
    return {name: Target.from_environ(name) for name in TARGET_NAMES}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "conformance: differential MLflow client conformance against live servers "
        "(MLFLOW_CONFORMANCE_PLAIN_URL, MLFLOW_CONFORMANCE_OURS_URL; skipped when unset)",
    )


def _asked_for(config: pytest.Config) -> bool:
    """Whether the command line names this package or something in it (not only a parent such as tests/)."""
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # A whole-repository run (pytest, scripts/test) with no target configured leaves the package out: no
    # skipped-test noise and no mlflow import. Named on the command line, it is collected and skips with the reason.
    if HERE not in collection_path.parents:
        return None
    if any(configured_targets().values()) or _asked_for(config):
        return None
    return True


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # refusals.py is the list of intended differences and also holds their test; pytest's default
    # python_files pattern (test_*.py) would not collect it (named on the command line, pytest collects it).
    if file_path.parent == HERE and file_path.name == "refusals.py" and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.conformance)


def _reset_mlflow_globals() -> None:
    import mlflow
    from mlflow.tracking import fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    if mlflow.get_active_model_id() is not None:
        mlflow.clear_active_model()


@pytest.fixture(params=TARGET_NAMES)
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """A configured target, with mlflow's process-wide state (tracking and registry URI, credentials,
    TLS settings, active run and experiment) pointed at it for this test only."""
    chosen = Target.from_environ(request.param)
    if chosen is None:
        pytest.skip(f"{ENV_PREFIX}{request.param.upper()}_URL is not set")
    import mlflow

    if chosen.insecure_tls:  # asked for: one warning per request would drown the report
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    for key in CLIENT_VARIABLES:
        # setenv first so that monkeypatch records and restores the variable even where it was unset: mlflow
        # sets some of them itself (mlflow.set_experiment sets MLFLOW_EXPERIMENT_ID).
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    for key, value in chosen.env().items():
        monkeypatch.setenv(key, value)
    _reset_mlflow_globals()
    mlflow.set_tracking_uri(chosen.url)  # also resets the tracer provider, which holds the URI
    mlflow.set_registry_uri(chosen.url)
    try:
        yield chosen
    finally:
        _reset_mlflow_globals()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        chosen.close()


@pytest.fixture
def uid(target: Target) -> str:
    """A name no earlier run has used: conf-<target>-<random>."""
    return f"conf-{target.name}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(target: Target) -> Any:
    return target.client()


@pytest.fixture
def experiment_id(client: Any, uid: str) -> Iterator[str]:
    """A fresh experiment for this test, soft-deleted afterwards (restorable, for a look after a failure)."""
    experiment = client.create_experiment(uid, tags={"conformance": "true"})
    yield experiment
    try:
        client.delete_experiment(experiment)
    except Exception as exc:  # the test may have deleted it itself
        print(f"cleanup of experiment {experiment}: {exc}", file=sys.stderr)
