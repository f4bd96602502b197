"""Runs several ``mlflow`` CLI commands in one child process (test_cli.py starts it with a target's environment).

Each command goes through the click group the ``mlflow`` console script runs (checked below), so the child pays
MLflow's import time once instead of once per command. Prints one JSON line: the console script's target and,
per command, its exit code, stdout and stderr.

Usage: python cli_driver.py '[["experiments", "search"], ["runs", "describe", "--run-id", "..."]]'
"""

from __future__ import annotations

import json
import sys
import traceback
from importlib.metadata import entry_points

MARKER = "CONFORMANCE-CLI-RESULT "


def main() -> None:
    from click.testing import CliRunner
    from mlflow.cli import cli

    # mlflow and mlflow-skinny both declare the script, to the same object.
    scripts = sorted({script.value for script in entry_points(group="console_scripts", name="mlflow")})
    results = []
    for args in json.loads(sys.argv[1]):
        result = CliRunner().invoke(cli, args, prog_name="mlflow", catch_exceptions=True)
        error = None
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            error = "".join(traceback.format_exception(result.exception))
        results.append(
            {
                "args": args,
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "error": error,
            }
        )
    is_cli = bool(scripts) and all(script == "mlflow.cli:cli" for script in scripts)
    print(MARKER + json.dumps({"console_script": scripts, "is_cli": is_cli, "results": results}))


if __name__ == "__main__":
    main()
