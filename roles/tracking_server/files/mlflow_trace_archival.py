#!/usr/bin/env python3
"""One pass of MLflow's server-owned trace archival, for a server whose job runner is off.

Run by the tracking_server role's <service>-trace-archival.timer with the MLflow venv's Python,
under the server's hardening. Where the job runner is on, MLflow's periodic jobs run these passes
themselves (mlflow/server/jobs/utils.py, trace_archival_scheduler); this script runs the same one:
the configuration from MLFLOW_TRACE_ARCHIVAL_CONFIG (the role's trace-archival.yaml), the store
from MLFLOW_TRACKING_URI (the timers' root-only environment file, never an argument).

MLflow logs a failed pass, or a trace it could not archive, and carries on (its scheduler retries
a minute later): here either fails the unit, so that systemctl and the journal show it; the next
timer run tries again. Prints one JSON object: {"archived": N} or {"error": ...}.
"""

from __future__ import annotations

import json
import logging
import os
import sys


class _Failures(logging.Handler):
    """What MLflow logs of a failed pass: errors, and each trace it could not archive (a warning)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or message.startswith("Failed to archive trace"):
            self.messages.append(message)


def main() -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.tracing import trace_archival_service as service
    from mlflow.tracing.trace_archival_config import get_trace_archival_server_config
    from mlflow.tracking._tracking_service.utils import _get_store

    errors = _Failures()  # after MLflow's import, which sets up its loggers
    logging.getLogger("mlflow").addHandler(errors)

    try:  # MLflow's own reader only warns about a configuration it cannot use
        config = get_trace_archival_server_config()
    except MlflowException as exc:
        print(json.dumps({"error": exc.message}))
        return 1
    settings = service._get_trace_archival_scheduler_settings()
    if config is None or not config.enabled or settings is None:
        print(json.dumps({"error": "no trace archival is configured (MLFLOW_TRACE_ARCHIVAL_CONFIG)"}))
        return 1
    store = _get_store(store_uri=os.environ["MLFLOW_TRACKING_URI"],
                       artifact_uri=os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT"))
    archived = service._run_trace_archival_scheduler(store, settings=settings)
    if errors.messages:
        print(json.dumps({"error": errors.messages[-1], "archived": archived}))
        return 1
    print(json.dumps({"archived": archived}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
