"""Benchmarks of the deployed tracking server against the plain (blog) recipe, side by side.

    bench/run [--quick | --ci] [--only FIGURES] [--keep] [--json PATH]

bench/run calls scripts/setup, then this file with the project's .venv. One Docker testbed
(roles/testbed, testbed_name "bench") with two VMs of the same image: ``ours`` gets site.yml,
``plain`` gets the blog recipe (bench/plain_recipe.sh). PostgreSQL and the GCS stand-in are shared;
each server has its own database and bucket prefix. Figures:

  deploy     cold deploy, fresh VM to a healthy server (ours: site.yml with its canary; plain: /health 200);
             ours twice, with the accelerator (Mitogen) on its VM and without it on a third VM (``linear``)
  rest       each server's memory at rest (its unit's cgroup) and processes, once the job runner settled
  rerun      no-op re-run of site.yml (seconds, changed count), with Ansible settings tried (the accelerator
             off among them)
  load       requests/s and p50/p99 of log-metric, log-batch (100 metrics), create-run, search-runs
  artifacts  a large artifact up and down through each server vs direct to the GCS stand-in; memory growth
  ui         bytes of the UI's first load (index.html + the JS/CSS it references, gzip accepted)
  restart    a restart to the first answer to an API call (seconds), and the CPU-seconds the VM spent
             until then and until its processes settled (ours: systemctl restart; plain: its unit again)
  levers     role variables that move the writes (auth cache TTL, workers, gunicorn), measured with the load

``deploy`` always runs (every other figure needs both servers). The testbed is removed at the end,
on failure too, unless --keep. Prints a markdown table; writes JSON (bench/results/<date>.json) and
draws it beside the JSON as an SVG chart (bench/chart.py: ours against plain per figure, and the trend
across the runs recorded in docs/bench/).

--ci is the smallest run that still measures every headline figure (scripts/test runs it): no
``linear`` VM, ours' deploy and the plain recipe's install at the same time, one no-op re-run, short
load windows with 8 threads, a 20 MiB artifact, no levers, testbed ``benchci``. Its exit status says
whether every figure was measured, never whether a goal was met (so does every mode's).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from chart import write_chart
from load import Client, Target, download, run_load, upload

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlflow_ansible.accelerator import detect  # noqa: E402  (the checkout's package, as the wrapper uses it)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV_BIN = Path(sys.executable).parent
IMAGE = "mlflow-ansible/debian:12"
BUCKET = "mlflow-artifacts"  # the testbed role's default bucket
CA_MOUNT = "/usr/local/share/testbed-ca.crt"  # the testbed role's default mount point
FIGURES = ["deploy", "rest", "rerun", "load", "artifacts", "ui", "restart", "levers"]
CI_FIGURES = ["deploy", "rest", "rerun", "load", "artifacts", "ui", "restart"]  # the headline figures, no levers
OPERATIONS = ["log-metric", "log-batch", "create-run", "search-runs"]
# ours (site.yml, accelerated), linear (site.yml with the accelerator off: the cold deploy's second column), plain
VMS = ["ours", "linear", "plain"]
CI_VMS = ["ours", "plain"]
MIB = 1 << 20
RECORDED = REPO / "docs" / "bench"  # the runs kept in the repository: the chart's trend

SIZES = {
    # runs seeded for search-runs, artifact bytes, seconds of load per operation (after warmup)
    "full": {"search_runs": 5000, "artifact_bytes": 1024 * MIB, "duration": 15.0, "warmup": 2.0},
    "quick": {"search_runs": 200, "artifact_bytes": 20 * MIB, "duration": 3.0, "warmup": 1.0},
    # --ci: 8 load threads (not 16) and 4 s windows, so that a loaded CI machine still completes requests in them
    "ci": {"search_runs": 200, "artifact_bytes": 20 * MIB, "duration": 4.0, "warmup": 1.0},
}
MULTIPART_THRESHOLD = 5 * MIB  # lowered MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE (client and server)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, text=True, capture_output=True, check=False, **kwargs)


class BenchError(Exception):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = args.name
        self.mode = mode(args)
        self.ci = self.mode == "ci"
        self.sizes = SIZES[self.mode]
        self.vms = testbed_vms(self.mode)
        self.tmp = Path(tempfile.mkdtemp(prefix="mlflow-bench-"))
        os.chmod(self.tmp, 0o700)
        self.db_password = secrets.token_urlsafe(18)
        self.results: dict[str, Any] = {}
        self.ours_vm = f"{self.name}-ours"
        # The accelerator as the wrapper would run it; ``accelerate=False`` runs ansible-core's linear strategy.
        self.accelerator = detect(os.environ)
        if not self.accelerator.enabled:
            raise BenchError(f"the accelerator is off here: {self.accelerator.reason}")
        self.plain_vm = f"{self.name}-plain"
        self.ips: dict[str, str] = {}
        self.ours: Target | None = None
        self.plain: Target | None = None
        self.plain_uri = ""

    # -- plumbing -----------------------------------------------------------------------------------------

    def env(self, extra: dict[str, str] | None = None, accelerate: bool = True) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ANSIBLE_", "MLFLOW_ANSIBLE_VAR", "MLFLOW_TRACKING"))
        }
        env.update(
            {
                "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
                # ansible.cfg turns pipelining on for SSH ([ssh_connection]), which the docker connection
                # plugin of the testbed does not read: the same setting for it, as molecule does.
                "ANSIBLE_PIPELINING": "true",
                "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
            }
        )
        if accelerate:
            env.update(self.accelerator.env())
        env.update(extra or {})
        return env

    def write_private(self, name: str, data: Any) -> Path:
        path = self.tmp / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
        return path

    def ansible(
        self,
        playbook: str,
        extra_vars: dict[str, Any] | None = None,
        inventory: Path | None = None,
        limit: str | None = None,
        env: dict[str, str] | None = None,
        tag: str = "run",
        accelerate: bool = True,
    ) -> dict[str, Any]:
        argv = [str(VENV_BIN / "ansible-playbook"), playbook]
        if inventory:
            argv += ["-i", str(inventory)]
        if limit:
            argv += ["--limit", limit]
        if extra_vars:
            argv += ["-e", f"@{self.write_private(f'vars-{tag}.json', extra_vars)}"]
        begin = time.monotonic()
        proc = run(argv, cwd=REPO, env=self.env(env, accelerate))
        seconds = time.monotonic() - begin
        (self.tmp / f"ansible-{tag}.log").write_text(proc.stdout + proc.stderr)
        recap = {}
        match = re.search(r"^\S+\s+:\s+(ok=.*)$", proc.stdout, re.M)
        if match:
            recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
        return {"rc": proc.returncode, "seconds": round(seconds, 1), "recap": recap, "stdout": proc.stdout}

    def docker_exec(self, container: str, argv: list[str], stdin: str | None = None, env: dict[str, str] | None = None):
        cmd = ["docker", "exec", "-i"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        return run(cmd + [container] + argv, input=stdin)

    def psql(self, database: str, sql: str) -> str:
        proc = self.docker_exec(
            f"{self.name}-postgres",
            ["su", "postgres", "-c", f"psql -q -X -v ON_ERROR_STOP=1 -d {database} -At"],
            stdin=sql,
        )
        if proc.returncode:
            raise BenchError(f"psql {database}: {proc.stderr.strip()}")
        return proc.stdout

    # -- testbed ------------------------------------------------------------------------------------------

    def testbed(self, state: str) -> dict[str, Any]:
        extra = {
            "testbed_state": state,
            "testbed_name": self.name,
            "testbed_vms": [{"name": vm, "image": IMAGE} for vm in self.vms],
            "testbed_db_password": self.db_password,
            "testbed_ca_bundle": self.args.ca_bundle or "",
            "ansible_python_interpreter": sys.executable,
        }
        return self.ansible("playbooks/testbed.yml", extra, tag=f"testbed-{state}")

    def up(self) -> None:
        log(f"creating the testbed {self.name} (VMs {', '.join(self.vms)}, {IMAGE})")
        self.testbed("absent")
        result = self.testbed("present")
        if result["rc"]:
            raise BenchError(f"testbed failed, see {self.tmp}/ansible-testbed-present.log\n{result['stdout'][-3000:]}")
        for vm in self.vms:
            proc = run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    f"{self.name}-{vm}",
                ]
            )
            self.ips[vm] = proc.stdout.strip()
        self.psql("postgres", "CREATE DATABASE mlflow_plain OWNER mlflow;")
        if "linear" in self.vms:
            self.psql("postgres", "CREATE DATABASE mlflow_linear OWNER mlflow;")
        log("testbed up: " + ", ".join(f"{vm} {self.ips[vm]}" for vm in self.vms))

    def down(self) -> None:
        log(f"removing the testbed {self.name}")
        result = self.testbed("absent")
        if result["rc"]:
            log(f"teardown failed: {result['stdout'][-1500:]}")

    # -- ours -----------------------------------------------------------------------------------------------

    def inventory(self, group_vars: dict[str, Any] | None = None, vm: str = "ours") -> Path:
        variables = {
            "cloudsql_client_host": "postgres",
            "cloudsql_client_password": self.db_password,
            "tracking_server_artifacts_destination": f"gs://{BUCKET}/{vm}",
            "tracking_server_extra_env": {
                "STORAGE_EMULATOR_HOST": "http://gcs:9023",
                "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(MULTIPART_THRESHOLD),
            },
            "tracking_server_public_url": f"https://{self.ips[vm]}",
            "tracking_server_controller_secrets_dir": str(self.tmp / "secrets"),
        }
        if vm != "ours":  # a database of its own, so its deploy is as cold as ours
            variables["cloudsql_client_database"] = f"mlflow_{vm}"
            variables["tracking_server_auth_database"] = f"mlflow_{vm}_auth"
        if self.args.ca_bundle:
            variables["mlflow_ca_bundle"] = CA_MOUNT
        variables.update(group_vars or {})
        host = {
            "ansible_host": f"{self.name}-{vm}",
            # The short name: the accelerator takes over only this spelling of the docker connection.
            "ansible_connection": "docker",
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        data = {"all": {"children": {"mlflow_servers": {"hosts": {vm: host}, "vars": variables}}}}
        return self.write_private(f"inventory-{vm}.yml", data)

    def deploy_ours(
        self,
        tag: str,
        group_vars: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        accelerate: bool = True,
        vm: str = "ours",
    ):
        inventory = self.inventory(group_vars, vm)
        result = self.ansible("site.yml", inventory=inventory, limit=vm, env=env, tag=tag, accelerate=accelerate)
        if result["rc"]:
            raise BenchError(f"site.yml ({tag}) failed rc={result['rc']}:\n{result['stdout'][-4000:]}")
        return result

    def admin_password(self) -> str:
        files = sorted((self.tmp / "secrets").glob("*/admin-password"))
        if not files:
            raise BenchError("no generated admin password under the secrets dir")
        return files[0].read_text().strip()

    # -- plain ------------------------------------------------------------------------------------------

    def plain_recipe(self, *args: str, env: dict[str, str] | None = None):
        script = (BENCH / "plain_recipe.sh").read_text()
        return self.docker_exec(self.plain_vm, ["bash", "-s", "--", *args], stdin=script, env=env)

    def plain_start(self, uri: str, timeout: float = 120.0) -> dict[str, Any]:
        """Start the recipe's server and wait for /health 200 from the host (or the unit failing)."""
        env = {
            "STORAGE_EMULATOR_HOST": "http://gcs:9023",
            "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(MULTIPART_THRESHOLD),
        }
        self.plain_recipe("stop")
        begin = time.monotonic()
        proc = self.plain_recipe("start", uri, f"gs://{BUCKET}/plain", env=env)
        if proc.returncode:
            raise BenchError(f"plain start: {proc.stderr}")
        target = Target("plain", f"http://{self.ips['plain']}:5000")
        last_unit_check = 0.0
        while time.monotonic() - begin < timeout:
            if answers(target, "/health", timeout=2):
                return {"ok": True, "seconds": round(time.monotonic() - begin, 1)}
            if time.monotonic() - last_unit_check > 2:
                last_unit_check = time.monotonic()
                state = self.docker_exec(self.plain_vm, ["systemctl", "is-active", "mlflow-plain"]).stdout.strip()
                if state in ("failed", "inactive"):
                    journal = self.docker_exec(
                        self.plain_vm, ["journalctl", "-u", "mlflow-plain", "--no-pager", "-o", "cat", "-n", "40"]
                    ).stdout
                    errors = [line for line in journal.splitlines() if "Error" in line or "No module" in line]
                    return {
                        "ok": False,
                        "seconds": round(time.monotonic() - begin, 1),
                        "error": errors[-1] if errors else journal[-500:],
                    }
            time.sleep(0.25)
        return {"ok": False, "seconds": timeout, "error": "no /health 200 before the timeout"}

    def need_servers(self) -> None:
        if self.ours is None or self.plain is None:
            raise BenchError("the servers are not deployed")

    # -- figure 1 ---------------------------------------------------------------------------------------

    def plain_install(self) -> tuple[float, subprocess.CompletedProcess[str]]:
        begin = time.monotonic()
        env = {"PIP_CERT": CA_MOUNT} if self.args.ca_bundle else {}
        install = self.plain_recipe("install", env=env)
        return time.monotonic() - begin, install

    def figure_deploy(self) -> None:
        profile = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
        with ThreadPoolExecutor(max_workers=1) as pool:
            # --ci: the plain recipe's install runs while ours deploys (both slower than alone, the run shorter).
            plain_install = pool.submit(self.plain_install) if self.ci else None
            log(
                "figure 1: cold deploy of ours (site.yml --limit ours)"
                + (", the plain recipe's install at the same time" if plain_install else "")
            )
            ours = self.deploy_ours("cold", env=profile)
            log(f"  ours: {ours['seconds']} s, recap {ours['recap']}")
            log(f"  slowest tasks: {slowest_tasks(ours['stdout'], 5)}")
            self.ours = Target("ours", f"https://{self.ips['ours']}", "admin", self.admin_password())

            linear = None
            if "linear" in self.vms:
                log("figure 1: cold deploy of ours without the accelerator (site.yml --limit linear, linear strategy)")
                linear = self.deploy_ours("cold-linear", env=profile, accelerate=False, vm="linear")
                log(f"  ours, accelerator off: {linear['seconds']} s, recap {linear['recap']}")
                run(["docker", "stop", f"{self.name}-linear"])  # out of the way of the other figures

            if plain_install is None:
                log("figure 1: plain recipe (apt python3-pip python3-venv, pip install mlflow ..., mlflow server)")
                install_s, install = self.plain_install()
            else:
                install_s, install = plain_install.result()
        if install.returncode:
            raise BenchError(f"plain recipe install failed: {install.stderr[-2000:]}")
        version = install.stdout.strip().splitlines()[-1] if install.stdout.strip() else "?"
        log(f"  plain install: {install_s:.1f} s ({version})")
        bare = f"postgresql://mlflow:{self.db_password}@postgres:5432/mlflow_plain"
        if self.ci:
            first: dict[str, Any] = {"skipped": "--ci"}
        else:
            first = self.plain_start(bare, timeout=90)
            log(f"  plain with postgresql://: {first}")
        # 300 s: as long as ours may take under load (its role waits tracking_server_health_timeout retries)
        self.plain_uri = bare.replace("postgresql://", "postgresql+psycopg2://", 1)
        fixed = self.plain_start(self.plain_uri, timeout=300)
        if not fixed["ok"]:
            raise BenchError(f"plain recipe with postgresql+psycopg2:// did not come up: {fixed}")
        plain_s = install_s + fixed["seconds"]
        log(f"  plain: {plain_s:.1f} s to /health 200 (install {install_s:.1f} + start {fixed['seconds']})")
        self.plain = Target("plain", f"http://{self.ips['plain']}:5000")
        self.results["deploy"] = {
            "ours_seconds": ours["seconds"],
            "ours_recap": ours["recap"],
            "ours_slowest_tasks": slowest_tasks(ours["stdout"], 12),
            "accelerator": self.accelerator.describe(),
            "concurrent": self.ci,
            "plain_seconds": round(plain_s, 1),
            "plain_install_seconds": round(install_s, 1),
            "plain_start_seconds": fixed["seconds"],
            "plain_mlflow_version": version,
            "plain_bare_postgresql_uri": first,
            "plain_fix": "postgresql+psycopg2:// instead of postgresql:// "
            "(SQLAlchemy 2.1 maps the bare scheme to psycopg 3)",
            "ratio": round(ours["seconds"] / plain_s, 2),
        }
        if linear is not None:
            self.results["deploy"].update(
                {
                    "ours_linear_seconds": linear["seconds"],
                    "ours_linear_recap": linear["recap"],
                    "ours_linear_slowest_tasks": slowest_tasks(linear["stdout"], 12),
                }
            )

    # -- figure 2 ---------------------------------------------------------------------------------------

    def figure_rerun(self) -> None:
        variants: list[tuple[str, dict[str, str], dict[str, Any]]] = [
            ("default (accelerator on, gathering explicit)", {}, {}),
            ("default, again", {}, {}),
            ("accelerator off (linear strategy, pipelining on)", {}, {}),
            ("ANSIBLE_PIPELINING=false", {"ANSIBLE_PIPELINING": "false"}, {}),
            ("ANSIBLE_GATHERING=smart + jsonfile fact cache", self.fact_cache_env(), {}),
            ("tracking_server_canary=false", {}, {"tracking_server_canary": False}),
        ]
        if self.ci:
            variants = variants[:1]
        elif self.args.quick:
            variants = variants[:1] + variants[2:3]
        rows = []
        for index, (label, env, group_vars) in enumerate(variants):
            plain_strategy = label.startswith("accelerator off")
            profile = (
                {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"} if index == 0 or plain_strategy else {}
            )
            result = self.deploy_ours(f"rerun-{index}", group_vars, {**env, **profile}, accelerate=not plain_strategy)
            row = {"variant": label, "seconds": result["seconds"], "changed": result["recap"].get("changed")}
            if profile:
                row["slowest_tasks"] = slowest_tasks(result["stdout"])
            log(f"figure 2: {label}: {result['seconds']} s, changed={row['changed']}")
            rows.append(row)
        default = [row for row in rows if row["variant"].startswith("default")]
        linear = [row for row in rows if row["variant"].startswith("accelerator off")]
        self.results["rerun"] = {
            "variants": rows,
            "seconds": min(row["seconds"] for row in default),
            "changed": max(row["changed"] or 0 for row in default),
            "linear_seconds": linear[0]["seconds"] if linear else None,
        }

    def fact_cache_env(self) -> dict[str, str]:
        return {
            "ANSIBLE_GATHERING": "smart",
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.tmp / "facts"),
        }

    # -- figure 3 ---------------------------------------------------------------------------------------

    def seed_search(self, target: Target, database: str, experiment_id: str, count: int) -> None:
        client = Client(target)
        location = client.json("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}")["experiment"][
            "artifact_location"
        ]
        client.close()
        # The same rows in both databases, straight into the tables (runs, tags, params, metrics).
        self.psql(
            database,
            f"""
            BEGIN;
            CREATE TEMP TABLE seed AS
              SELECT i, md5('{target.name}-' || i) AS id FROM generate_series(1, {count}) AS i;
            INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,
                              start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id)
              SELECT id, 'seed-' || i, 'LOCAL', '', '', 'bench', 'FINISHED', 1760000000000 + i * 1000,
                     1760000000000 + i * 1000 + 500, '', 'active',
                     '{location}/' || id || '/artifacts', {int(experiment_id)} FROM seed;
            INSERT INTO tags (key, value, run_uuid) SELECT 'mlflow.runName', 'seed-' || i, id FROM seed;
            INSERT INTO tags (key, value, run_uuid) SELECT 'mlflow.user', 'bench', id FROM seed;
            INSERT INTO params (key, value, run_uuid) SELECT 'lr', (i % 10)::text, id FROM seed;
            INSERT INTO params (key, value, run_uuid) SELECT 'model', 'm' || (i % 7), id FROM seed;
            INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)
              SELECT 'loss', (i % 1000) / 1000.0, 1760000000000 + i * 1000, 0, false, id FROM seed;
            INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)
              SELECT 'loss', (i % 1000) / 1000.0, 1760000000000 + i * 1000, 0, false, id FROM seed;
            COMMIT;
            ANALYZE;
            """,  # noqa: S608 - the values are the benchmark's own (a name, ints, the server's location)
        )

    def load_figures(self, targets: list[Target], operations: list[str], tag: str) -> list[dict[str, Any]]:
        threads = self.args.threads
        duration, warmup = self.sizes["duration"], self.sizes["warmup"]
        experiments = {}
        for target in targets:
            client = Client(target)
            experiments[target.name] = client.json(
                "POST", "/api/2.0/mlflow/experiments/create", {"name": f"bench-{tag}-{time.time_ns()}"}
            )["experiment_id"]
            client.close()

        def now_ms() -> int:
            return int(time.time() * 1000)

        def new_run(client: Client, experiment_id: str) -> str:
            body = {"experiment_id": experiment_id, "start_time": now_ms()}
            return client.json("POST", "/api/2.0/mlflow/runs/create", body)["run"]["info"]["run_id"]

        def factories(target: Target) -> dict[str, Any]:
            experiment_id = experiments[target.name]

            def log_metric(client: Client, index: int):
                run_id = new_run(client, experiment_id)

                def op(c: Client, i: int) -> int:
                    body = {"run_id": run_id, "key": "loss", "value": 1.0 / (i + 1), "timestamp": now_ms(), "step": i}
                    return c.request("POST", "/api/2.0/mlflow/runs/log-metric", body)[0]

                return op

            def log_batch(client: Client, index: int):
                run_id = new_run(client, experiment_id)

                def op(c: Client, i: int) -> int:
                    ts = now_ms()
                    metrics = [{"key": f"m{k}", "value": k * 0.5 + i, "timestamp": ts, "step": i} for k in range(100)]
                    return c.request("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics})[
                        0
                    ]

                return op

            def create_run(client: Client, index: int):
                def op(c: Client, i: int) -> int:
                    body = {"experiment_id": experiment_id, "start_time": now_ms(), "run_name": f"t{index}-{i}"}
                    return c.request("POST", "/api/2.0/mlflow/runs/create", body)[0]

                return op

            def search_runs(client: Client, index: int):
                body = {
                    "experiment_ids": [self.search_experiments[target.name]],
                    "filter": "metrics.loss < 0.5",
                    "max_results": 100,
                    "order_by": ["attributes.start_time DESC"],
                }

                def op(c: Client, i: int) -> int:
                    return c.request("POST", "/api/2.0/mlflow/runs/search", body)[0]

                return op

            return {
                "log-metric": log_metric,
                "log-batch": log_batch,
                "create-run": create_run,
                "search-runs": search_runs,
            }

        rows = []
        for operation in operations:
            for target in targets:
                result = run_load(target, operation, factories(target)[operation], threads, duration, warmup)
                summary = result.summary()
                if summary["requests"] == 0 and not summary["errors"]:
                    # Not one request finished in the window (a loaded machine: --ci's are seconds long): a
                    # window three times as long, once, before the figure counts as not measured.
                    log(f"  {tag} {operation} {target.name}: no request finished in {duration} s, measuring again")
                    result = run_load(target, operation, factories(target)[operation], threads, 3 * duration, warmup)
                    summary = result.summary()
                log(
                    f"  {tag} {operation} {target.name}: {summary['rps']} req/s, p50 {summary['p50_ms']} ms, "
                    f"p99 {summary['p99_ms']} ms, errors {summary['errors']}"
                )
                rows.append(summary)
        return rows

    def figure_load(self) -> None:
        self.need_servers()
        count = self.sizes["search_runs"]
        log(f"figure 3: seeding {count} runs per server for search-runs")
        self.search_experiments = {}
        for target, database in ((self.ours, "mlflow"), (self.plain, "mlflow_plain")):
            client = Client(target)
            experiment_id = client.json(
                "POST", "/api/2.0/mlflow/experiments/create", {"name": f"bench-search-{time.time_ns()}"}
            )["experiment_id"]
            client.close()
            self.seed_search(target, database, experiment_id, count)
            self.search_experiments[target.name] = experiment_id
        log(f"figure 3: load, {self.args.threads} threads, {self.sizes['duration']} s per operation and server")
        rows = self.load_figures([self.ours, self.plain], OPERATIONS, "load")
        self.results["load"] = {
            "threads": self.args.threads,
            "seconds_per_operation": self.sizes["duration"],
            "warmup_seconds": self.sizes["warmup"],
            "search_runs_seeded": count,
            "ours_path": "HTTPS through nginx (tls_proxy on, the default) with basic auth (admin)",
            "plain_path": "HTTP to mlflow on port 5000, no auth",
            "ours_workers": self.worker_count(),
            "plain_workers": 4,
            "rows": rows,
        }

    def worker_count(self) -> int | None:
        """Ours' workers: uvicorn's, plus the REST API's gunicorn workers under split."""
        proc = self.docker_exec(self.ours_vm, ["systemctl", "cat", "mlflow", "mlflow-api"])
        counts = [int(n) for n in re.findall(r"--workers (\d+)", proc.stdout)]
        return sum(counts) if counts else None

    # -- memory at rest --------------------------------------------------------------------------------

    def figure_rest(self) -> None:
        """Each unit's memory once its processes stopped changing (MLflow's job runner starts its
        consumers some seconds after the server: both servers run it, as MLflow ships it on)."""
        self.need_servers()
        # Ours: the slice holding the server's units (under split, uvicorn's and the REST API's gunicorn's).
        units = {"ours": (self.ours_vm, OURS_SLICE), "plain": (self.plain_vm, "mlflow-plain")}
        # Both at once: each waits for its own processes to settle, reading only its own cgroup.
        with ThreadPoolExecutor(max_workers=len(units)) as pool:
            futures = {name: pool.submit(memory_at_rest, vm, unit) for name, (vm, unit) in units.items()}
            rows: dict[str, Any] = {name: future.result() for name, future in futures.items()}
        for name, row in rows.items():
            log(f"memory at rest, {name}: {row}")
        self.results["rest"] = rows

    # -- figure 4 ---------------------------------------------------------------------------------------

    def figure_artifacts(self) -> None:
        self.need_servers()
        size = self.sizes["artifact_bytes"]
        local = self.tmp / "artifact.bin"
        log(f"figure 4: writing a {size // MIB} MiB file")
        block = os.urandom(MIB)
        with open(local, "wb") as handle:
            for index in range(size // MIB):
                handle.write(index.to_bytes(8, "big") + block[8:])
        rows: dict[str, Any] = {"bytes": size}
        for target, vm, unit in ((self.ours, self.ours_vm, OURS_SLICE), (self.plain, self.plain_vm, "mlflow-plain")):
            path = f"/api/2.0/mlflow-artifacts/artifacts/bench/{target.name}-{time.time_ns()}.bin"
            with MemorySampler(vm, unit) as memory:
                up_s, up_status, up_body = upload(target, path, str(local), size)
                down_s, down_status, down_bytes = download(target, path)
            row = {
                "upload_seconds": round(up_s, 2),
                "upload_status": up_status,
                "upload_mib_s": round(size / MIB / up_s, 1),
                "download_seconds": round(down_s, 2),
                "download_status": down_status,
                "download_bytes": down_bytes,
                "download_mib_s": round(size / MIB / down_s, 1),
                **memory.summary(),
            }
            if up_status != 200:
                row["upload_error"] = up_body
            log(f"  {target.name}: {row}")
            rows[target.name] = row
        local.unlink()
        rows["direct"] = self.direct_gcs(size)
        log(f"  direct (google-cloud-storage in the ours VM): {rows['direct']}")
        rows["multipart"] = {}
        # --ci leaves out the multipart upload (two MLflow clients started on the host): not a headline figure.
        multipart = (
            [] if self.ci else [(self.ours, self.ours_vm, "mlflow"), (self.plain, self.plain_vm, "mlflow-plain")]
        )
        for target, vm, unit in multipart:
            since = self.docker_exec(vm, ["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
            outcome = self.multipart(target)
            journal = self.docker_exec(vm, ["journalctl", "-u", unit, "--since", since, "--no-pager", "-o", "cat"])
            # The last line of each traceback: "package.module.SomeError: message".
            errors = [
                line for line in journal.stdout.splitlines() if re.match(r"[\w.]+(Error|Exception|Response)\b", line)
            ]
            outcome["server_errors"] = sorted(set(line.strip()[:300] for line in errors))[:4]
            rows["multipart"][target.name] = outcome
        if multipart:
            log(f"  multipart: {rows['multipart']}")
        direct = rows["direct"]
        rows["upload_ratio"] = round(direct["upload_seconds"] / rows["ours"]["upload_seconds"], 2)
        rows["download_ratio"] = round(direct["download_seconds"] / rows["ours"]["download_seconds"], 2)
        self.results["artifacts"] = rows

    def direct_gcs(self, size: int) -> dict[str, Any]:
        script = f"""
import json, os, subprocess, time
from google.cloud import storage
path = "/var/tmp/bench-direct.bin"
subprocess.run(["head", "-c", "{size}", "/dev/urandom"], stdout=open(path, "wb"), check=True)
blob = storage.Client(project="bench").bucket("{BUCKET}").blob("direct/bench-%d.bin" % time.time_ns())
t = time.monotonic(); blob.upload_from_filename(path); up = time.monotonic() - t
os.unlink(path)
t = time.monotonic()
with open("/dev/null", "wb") as sink:
    blob.download_to_file(sink)
down = time.monotonic() - t
mib = {size} / 1048576
print(json.dumps({{"upload_seconds": round(up, 2), "download_seconds": round(down, 2),
                  "upload_mib_s": round(mib / up, 1), "download_mib_s": round(mib / down, 1)}}))
"""
        proc = self.docker_exec(
            self.ours_vm,
            ["/opt/mlflow/current/bin/python", "-"],
            stdin=script,
            env={"STORAGE_EMULATOR_HOST": "http://gcs:9023"},
        )
        if proc.returncode:
            raise BenchError(f"direct upload failed: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def multipart(self, target: Target) -> dict[str, Any]:
        """Log a file above a lowered multipart threshold with the MLflow client (proxy multipart enabled)."""
        script = """
import json, logging, os, sys, mlflow
from mlflow import MlflowClient
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(os.urandom(12 * 1048576))
client = MlflowClient()
exp = client.create_experiment("bench-multipart-%d" % os.getpid())
run = client.create_run(exp)
out = {"run_id": run.info.run_id}
try:
    client.log_artifact(run.info.run_id, path)
    out["log_artifact"] = "ok"
except Exception as e:
    out["log_artifact"] = "%s: %s" % (type(e).__name__, str(e)[:400])
out["listed"] = [(f.path, f.file_size) for f in client.list_artifacts(run.info.run_id)]
print(json.dumps(out))
"""
        env = self.env(
            {
                "MLFLOW_TRACKING_URI": target.url,
                "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
                "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(MULTIPART_THRESHOLD),
                "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(MULTIPART_THRESHOLD),
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            }
        )
        if target.username:
            env.update(
                {
                    "MLFLOW_TRACKING_USERNAME": target.username,
                    "MLFLOW_TRACKING_PASSWORD": target.password,
                    "MLFLOW_TRACKING_INSECURE_TLS": "true",
                }
            )
        proc = run([sys.executable, "-c", script, str(self.tmp / "multipart.bin")], env=env, timeout=300)
        warnings = [line for line in proc.stderr.splitlines() if "multipart" in line.lower() or "Error" in line]
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            out = {"error": proc.stderr[-800:]}
        out["client_warnings"] = [w[:400] for w in warnings[:4]]
        return out

    # -- figure 5 ---------------------------------------------------------------------------------------

    def figure_ui(self) -> None:
        self.need_servers()
        rows = {}
        for target in (self.ours, self.plain):
            rows[target.name] = ui_bytes(target)
            log(f"figure 5: {target.name}: {rows[target.name]['total_bytes']} bytes in {rows[target.name]['files']}")
        rows["ratio"] = round(rows["ours"]["total_bytes"] / rows["plain"]["total_bytes"], 3)
        self.results["ui"] = rows

    # -- figure 6 ---------------------------------------------------------------------------------------

    def figure_restart(self) -> None:
        """Each server restarted, one after the other: seconds to the first answer to an API call (ours through
        nginx, with its credentials), and the CPU-seconds its VM spent until then and until its processes
        settled (MLflow's job runner starts after the server answers)."""
        self.need_servers()

        def ours() -> None:
            proc = self.docker_exec(self.ours_vm, ["systemctl", "restart", "mlflow"])
            if proc.returncode:
                raise BenchError(f"systemctl restart mlflow: {proc.stderr.strip()}")

        def plain() -> None:  # its unit stopped and started again as the deploy did, up to /health 200
            started = self.plain_start(self.plain_uri, timeout=300)
            if not started["ok"]:
                raise BenchError(f"plain recipe did not come back: {started}")

        rows = {}
        for target, vm, unit, restart in (
            (self.ours, self.ours_vm, OURS_SLICE, ours),
            (self.plain, self.plain_vm, "mlflow-plain", plain),
        ):
            rows[target.name] = restart_figure(target, vm, unit, restart)
            log(f"figure 6: {target.name}: {rows[target.name]}")
        self.results["restart"] = rows

    # -- levers ---------------------------------------------------------------------------------------

    def figure_levers(self) -> None:
        """Role variables that move the writes, each measured side by side with the plain server again."""
        self.need_servers()
        levers: list[tuple[str, dict[str, Any]]] = [
            ("tracking_server_auth_cache_ttl: 0 (MLflow's default)", {"tracking_server_auth_cache_ttl": 0}),
            # MLflow's own server alone (the default before split): every request through its ASGI stack.
            ("tracking_server_http_server: uvicorn (2 workers)", {"tracking_server_http_server": "uvicorn"}),
            # Bigger pools than the role's 2 + 3 per engine, above 8 threads (the preflight refuses a pool
            # not above the threads); the bench's PostgreSQL allows 200 connections.
            (
                "tracking_server_db_pool_size: 5, tracking_server_db_max_overflow: 4, "
                "tracking_server_gunicorn_threads: 8",
                {
                    "tracking_server_db_pool_size": 5,
                    "tracking_server_db_max_overflow": 4,
                    "tracking_server_gunicorn_threads": 8,
                },
            ),
            ("tracking_server_api_workers: 2", {"tracking_server_api_workers": 2}),
        ]
        if self.args.levers:
            # --levers FILE: a YAML list of {label, vars} measured instead of the list above.
            levers = [(item["label"], item["vars"]) for item in yaml.safe_load(Path(self.args.levers).read_text())]
        elif self.args.quick:
            levers = levers[:1]
        rows = []
        for index, (label, group_vars) in enumerate(levers):
            deploy = self.deploy_ours(f"lever-{index}", group_vars)
            log(f"lever {label}: deploy {deploy['seconds']} s, workers {self.worker_count()}")
            load = self.load_figures(
                [self.ours, self.plain], ["log-metric", "log-batch", "create-run"], f"lever{index}"
            )
            rows.append({"lever": label, "vars": group_vars, "workers": self.worker_count(), "rows": load})
        self.results["levers"] = rows
        # Back to what site.yml makes with the defaults (a --keep'd testbed is then the real thing).
        self.deploy_ours("lever-restore")


# Ours' units run in one slice (Slice= in roles/tracking_server/templates/mlflow.service.j2): its cgroup holds
# every process of the server, under split both units'.
OURS_SLICE = "mlflow.slice"


class MemorySampler:
    """Samples a unit's memory cgroup inside a VM every 0.2 s (usage and anonymous memory) and reads its peak.

    cgroup v2: memory.current, memory.stat anon, memory.peak. cgroup v1 (this test machine):
    memory.usage_in_bytes, memory.stat total_rss, memory.max_usage_in_bytes, which is reset first so the
    peak is the transfer's. Usage counts the page cache too (the proxy's temporary file); anon does not.
    """

    def __init__(self, vm: str, unit: str) -> None:
        self.vm, self.unit = vm, unit
        self.samples: list[tuple[int, int]] = []
        self.peak = 0
        self.peak_reset = False

    def _sh(self, command: str) -> subprocess.CompletedProcess[str]:
        return run(["docker", "exec", self.vm, "sh", "-c", command])

    def __enter__(self) -> MemorySampler:
        group = run(["docker", "exec", self.vm, "systemctl", "show", "-p", "ControlGroup", "--value", self.unit])
        group = group.stdout.strip()
        v1 = f"/sys/fs/cgroup/memory{group}"
        if self._sh(f"test -e {v1}/memory.usage_in_bytes").returncode == 0:
            self.dir, self.current, self.anon, self.peak_file = (
                v1,
                "memory.usage_in_bytes",
                "total_rss",  # hierarchical: a slice's children included (rss is the group's own only)
                "memory.max_usage_in_bytes",
            )
        else:
            self.dir, self.current, self.anon, self.peak_file = (
                f"/sys/fs/cgroup{group}",
                "memory.current",
                "anon",
                "memory.peak",
            )
        self.peak_reset = self._sh(f"echo 0 > {self.dir}/{self.peak_file}").returncode == 0
        # The loop runs while its marker file exists: removing the file stops it (docker exec does not).
        self.marker = f"/run/bench-sampler-{os.getpid()}-{time.time_ns()}"
        loop = (
            f"touch {self.marker}; cd {self.dir} && while [ -e {self.marker} ]; do echo $(cat {self.current}) "
            f"$(awk '$1==\"{self.anon}\"{{print $2}}' memory.stat); sleep 0.2; done"
        )
        self.proc = subprocess.Popen(
            ["docker", "exec", self.vm, "sh", "-c", loop], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.6)
        return self

    def procs_command(self) -> list[str]:
        """Lists the unit's processes (one line each), its child groups' too (a slice), in the memory hierarchy
        read above."""
        return ["sh", "-c", f"find {self.dir} -name cgroup.procs -exec cat {{}} +"]

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            parts = line.split()
            if len(parts) == 2:
                self.samples.append((int(parts[0]), int(parts[1])))

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        run(["docker", "exec", self.vm, "rm", "-f", self.marker])
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
        self.thread.join(timeout=5)
        proc = self._sh(f"cat {self.dir}/{self.peak_file}")
        self.peak = int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"memory": "no samples"}
        base_current, base_anon = self.samples[0]
        return {
            "memory_before_mib": round(base_current / MIB, 1),
            "memory_growth_mib": round((max(s[0] for s in self.samples) - base_current) / MIB, 1),
            "anon_growth_mib": round((max(s[1] for s in self.samples) - base_anon) / MIB, 1),
            # The cgroup's own peak (reset before the transfer) minus the usage before it.
            "memory_peak_growth_mib": round(max(0, self.peak - base_current) / MIB, 1) if self.peak_reset else None,
            "samples": len(self.samples),
        }


def memory_at_rest(vm: str, unit: str, settle: float = 10.0, limit: float = 240.0) -> dict[str, Any]:
    """A unit's memory (usage, anonymous) and process count once the count held for ``settle`` seconds."""
    sampler = MemorySampler(vm, unit)
    with sampler:
        procs = sampler.procs_command()
        start = stable_since = time.monotonic()
        count = None
        while time.monotonic() - start < limit:
            now = len(run(["docker", "exec", vm, *procs]).stdout.split())
            if now != count:
                count, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                break
            time.sleep(2)
        time.sleep(1)
    if not sampler.samples:
        return {"memory": "no samples"}
    current, anon = sampler.samples[-1]
    return {
        "memory_mib": round(current / MIB, 1),
        "anon_mib": round(anon / MIB, 1),
        "processes": count,
        "settled_after_s": round(stable_since - start, 1),
    }


def answers(target: Target, path: str, timeout: float) -> bool:
    """One GET of ``path``: whether the server answered it 200 (any error is a no)."""
    with contextlib.suppress(OSError, Exception):
        client = Client(target, timeout=timeout)
        status, _, _ = client.request("GET", path)
        client.close()
        return status == 200
    return False


def vm_cpu_seconds(vm: str) -> float | None:
    """CPU-seconds a testbed VM (its container's cgroup, read on the host) has used; None where unreadable."""
    ident = run(["docker", "inspect", "-f", "{{.Id}}", vm]).stdout.strip()
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{ident}/cpuacct.usage")
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{ident}.scope/cpu.stat")
    with contextlib.suppress(OSError, ValueError):
        if v1.exists():
            return int(v1.read_text()) / 1e9
        if v2.exists():
            stat = dict(line.split() for line in v2.read_text().splitlines())
            return int(stat["usage_usec"]) / 1e6
    return None


def restart_figure(target: Target, vm: str, unit: str, restart: Callable[[], None], limit: float = 300.0):
    """Restarts a server and times it to the first 200 from experiments/search; its VM's CPU-seconds until
    then, and until its unit's process count held for 10 s."""
    cpu_before = vm_cpu_seconds(vm)
    begin = time.monotonic()
    restart()
    seconds = None
    while time.monotonic() - begin < limit:
        if answers(target, "/api/2.0/mlflow/experiments/search?max_results=1", timeout=5):
            seconds = time.monotonic() - begin
            break
        time.sleep(0.25)
    if seconds is None:
        raise BenchError(f"{target.name}: no answer to experiments/search within {limit:.0f} s of its restart")
    cpu_answer = vm_cpu_seconds(vm)
    settled = memory_at_rest(vm, unit)
    cpu_settled = vm_cpu_seconds(vm)

    def spent(after: float | None) -> float | None:
        return round(after - cpu_before, 1) if after is not None and cpu_before is not None else None

    return {
        "seconds": round(seconds, 1),
        "cpu_seconds_to_answer": spent(cpu_answer),
        "cpu_seconds_settled": spent(cpu_settled),
        "processes": settled.get("processes"),
    }


def ui_bytes(target: Target) -> dict[str, Any]:
    """Bytes on the wire (bodies as sent, gzip accepted) of index.html and the JS/CSS it references."""
    client = Client(target)
    headers = {"Accept-Encoding": "gzip"}
    status, body, response = client.request("GET", "/", headers=headers)
    if status != 200:
        raise BenchError(f"{target.name}: GET / -> {status}")
    html = body
    if response.getheader("Content-Encoding") == "gzip":
        import gzip

        html = gzip.decompress(body)
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.decode(errors="replace"))
    files = [{"path": "/", "bytes": len(body), "encoding": response.getheader("Content-Encoding") or "identity"}]
    for asset in assets:
        path = asset if asset.startswith("/") else "/" + asset.removeprefix("./")
        status, data, response = client.request("GET", path, headers=headers)
        files.append(
            {
                "path": path,
                "status": status,
                "bytes": len(data),
                "encoding": response.getheader("Content-Encoding") or "identity",
            }
        )
    client.close()
    return {"total_bytes": sum(f["bytes"] for f in files), "files": len(files), "detail": files}


def slowest_tasks(stdout: str, count: int = 8) -> list[str]:
    lines = re.findall(r"^(.+?) -+ (\d+\.\d+)s$", stdout, re.M)
    ranked = sorted(lines, key=lambda item: float(item[1]), reverse=True)
    return [f"{float(seconds):.2f}s {name.strip()}" for name, seconds in ranked[:count]]


# -- the report -------------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "short")


def reported(label: str, figure: dict[str, Any], cell: Callable[[dict[str, Any]], str]) -> tuple[str, ...]:
    """A table row shown without a goal: ours' and plain's values of ``figure`` written alike."""
    return (label, cell(figure["ours"]), cell(figure["plain"]), "(reported)", "-")


def table(results: dict[str, Any]) -> str:
    rows = [("Figure", "Ours", "Plain recipe", "Goal", "Result")]
    deploy = results.get("deploy")
    if deploy:
        linear = deploy.get("ours_linear_seconds")
        rows.append(
            (
                "1. Cold deploy, fresh VM to healthy (s)",
                f"{deploy['ours_seconds']}" + (f" (accelerator off: {linear})" if linear is not None else ""),
                f"{deploy['plain_seconds']}",
                "≤ 30 s and ≤ 0.5× plain",
                f"{verdict(deploy['ours_seconds'] <= 30 and deploy['ratio'] <= 0.5)} ({deploy['ratio']}×)",
            )
        )
    rest = results.get("rest")
    if rest and "memory_mib" in rest.get("ours", {}) and "memory_mib" in rest.get("plain", {}):
        rows.append(
            reported(
                "Memory at rest (MiB usage; anonymous; processes)",
                rest,
                lambda row: f"{row['memory_mib']}; {row['anon_mib']}; {row['processes']}",
            )
        )
    rerun = results.get("rerun")
    if rerun:
        linear = rerun.get("linear_seconds")
        rows.append(
            (
                "2. No-op re-run of site.yml (s, changed)",
                f"{rerun['seconds']}, changed={rerun['changed']}"
                + (f" (accelerator off: {linear})" if linear is not None else ""),
                "-",
                "≤ 8 s, changed=0",
                verdict(rerun["seconds"] <= 8 and rerun["changed"] == 0),
            )
        )
    load = results.get("load")
    if load:
        by = {(r["operation"], r["target"]): r for r in load["rows"]}
        for operation in ("log-metric", "log-batch", "create-run", "search-runs"):
            ours, plain = by.get((operation, "ours")), by.get((operation, "plain"))
            if not ours or not plain:
                continue
            ratio = ours["rps"] / plain["rps"] if plain["rps"] else 0
            write = operation != "search-runs"
            ok = ratio >= 1.3 and ours["p99_ms"] < plain["p99_ms"] if write else None
            rows.append(
                (
                    f"3. {operation} (req/s, p50/p99 ms)",
                    f"{ours['rps']}, {ours['p50_ms']}/{ours['p99_ms']}",
                    f"{plain['rps']}, {plain['p50_ms']}/{plain['p99_ms']}",
                    "≥ 1.3× req/s, lower p99" if write else "(reported)",
                    f"{verdict(ok)} ({ratio:.2f}×)",
                )
            )
    art = results.get("artifacts")
    if art:
        size = f"{art['bytes'] // MIB} MiB"
        ours, plain, direct = art["ours"], art["plain"], art["direct"]
        rows.append(
            (
                f"4. Artifact upload {size} (MiB/s)",
                f"{ours['upload_mib_s']}",
                f"{plain['upload_mib_s']} (direct {direct['upload_mib_s']})",
                "≥ 0.7× direct",
                f"{verdict(art['upload_ratio'] >= 0.7)} ({art['upload_ratio']}×)",
            )
        )
        rows.append(
            (
                f"4. Artifact download {size} (MiB/s)",
                f"{ours['download_mib_s']}",
                f"{plain['download_mib_s']} (direct {direct['download_mib_s']})",
                "≥ 0.7× direct",
                f"{verdict(art['download_ratio'] >= 0.7)} ({art['download_ratio']}×)",
            )
        )
        # The verdict reads anonymous memory: the cgroup's usage also counts the page cache of the
        # proxy's temporary file (reclaimable, the file's size), shown beside it.
        anon = ours.get("anon_growth_mib")
        rows.append(
            (
                "4. Server memory growth (MiB, anon; cgroup)",
                f"{anon}; cgroup {ours.get('memory_peak_growth_mib') or ours.get('memory_growth_mib')}",
                f"{plain.get('anon_growth_mib')}; "
                f"cgroup {plain.get('memory_peak_growth_mib') or plain.get('memory_growth_mib')}",
                "≤ 200 MB",
                f"{verdict(anon is not None and anon * MIB <= 200e6)}"
                + (f" ({round(anon * MIB / 1e6)} MB)" if anon is not None else ""),
            )
        )
        multipart = art.get("multipart") or {}
        if multipart:
            outcome = {name: (row.get("log_artifact") == "ok") for name, row in multipart.items()}
            rows.append(
                (
                    f"4. Multipart upload, threshold {MULTIPART_THRESHOLD // MIB} MiB, keyless",
                    "uploaded" if outcome.get("ours") else "failed",
                    "uploaded" if outcome.get("plain") else "failed",
                    "exercised",
                    "met" if outcome.get("ours") else "short",
                )
            )
    ui = results.get("ui")
    if ui:
        rows.append(
            (
                "5. UI first load (bytes)",
                f"{ui['ours']['total_bytes']:,}",
                f"{ui['plain']['total_bytes']:,}",
                "≤ 0.35× plain",
                f"{verdict(ui['ratio'] <= 0.35)} ({ui['ratio']}×)",
            )
        )
    restart = results.get("restart")
    if restart and "seconds" in restart.get("ours", {}) and "seconds" in restart.get("plain", {}):
        rows.append(
            reported(
                "6. Restart to the first API answer (s; VM CPU-s to it, settled)",
                restart,
                lambda row: f"{row['seconds']}; {row['cpu_seconds_to_answer']}, {row['cpu_seconds_settled']}",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def unmeasured(results: dict[str, Any], figures: list[str], sizes: dict[str, Any] | None = None) -> list[str]:
    """What of the selected headline figures has no measurement: the run fails on these, never on a goal.

    A figure is measured when both servers gave its numbers: both deploys timed, both units' memory read,
    at least one successful request of every load operation on each server, each artifact up (200) and
    down whole, each UI's first load. The levers are not checked (variants, no headline figure).
    """
    missing: list[str] = []

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    deploy = results.get("deploy") or {}
    if not (number(deploy.get("ours_seconds")) and number(deploy.get("plain_seconds"))):
        missing.append("deploy: no cold deploy time for both servers")
    if "rest" in figures:
        rest = results.get("rest") or {}
        missing += [
            f"rest: no memory read for {name}" for name in ("ours", "plain") if "memory_mib" not in rest.get(name, {})
        ]
    if "rerun" in figures and not number((results.get("rerun") or {}).get("seconds")):
        missing.append("rerun: no re-run time")
    if "load" in figures:
        rows = {(row.get("operation"), row.get("target")): row for row in (results.get("load") or {}).get("rows", [])}
        for operation in OPERATIONS:
            for name in ("ours", "plain"):
                row = rows.get((operation, name))
                if not row or not row.get("requests"):
                    samples = "; ".join((row or {}).get("error_samples", [])[:2])
                    missing.append(
                        f"load: no successful {operation} request to {name}" + (f" ({samples})" if samples else "")
                    )
    if "artifacts" in figures:
        art = results.get("artifacts") or {}
        size = art.get("bytes") or (sizes or {}).get("artifact_bytes")
        for name in ("ours", "plain"):
            row = art.get(name) or {}
            if row.get("upload_status") != 200:
                missing.append(f"artifacts: {name} upload answered {row.get('upload_status')}")
            if row.get("download_status") != 200 or row.get("download_bytes") != size:
                missing.append(
                    f"artifacts: {name} download answered {row.get('download_status')}, "
                    f"{row.get('download_bytes')} of {size} bytes"
                )
        if not number((art.get("direct") or {}).get("upload_mib_s")):
            missing.append("artifacts: no direct transfer to compare with")
    if "ui" in figures:
        ui = results.get("ui") or {}
        missing += [
            f"ui: no first load from {name}"
            for name in ("ours", "plain")
            if not (ui.get(name) or {}).get("total_bytes")
        ]
    if "restart" in figures:
        restart = results.get("restart") or {}
        missing += [
            f"restart: no restart time of {name}"
            for name in ("ours", "plain")
            if not number((restart.get(name) or {}).get("seconds"))
        ]
    return missing


def testbed_vms(mode: str) -> list[str]:
    """--ci leaves out ``linear`` (ours again with the accelerator off): the headline is ours against plain."""
    return CI_VMS if mode == "ci" else VMS


def outcome(
    results: dict[str, Any], figures: list[str], sizes: dict[str, Any], failed: str | None
) -> tuple[int, str | None, list[str]]:
    """The run's exit status, failure and unmeasured figures: 1 when it broke off or a figure has no
    measurement, 0 otherwise, whatever the goals (the table shows those)."""
    missing = unmeasured(results, figures, sizes)
    if missing and not failed:
        failed = "not measured: " + "; ".join(missing)
    return (1 if failed else 0), failed, missing


def mode(args: argparse.Namespace) -> str:
    return "ci" if getattr(args, "ci", False) else "quick" if args.quick else "full"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The options, with --ci's defaults filled in (testbed ``benchci``, the headline figures); the figures to run."""
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small sizes (200 runs, 20 MiB artifact, 3 s of load)")
    sizes.add_argument(
        "--ci",
        action="store_true",
        help="the headline figures in a few minutes (no accelerator-off VM, no levers, 4 s of load, "
        "8 threads, testbed benchci); fails only when a figure cannot be measured",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated figures among {','.join(FIGURES)} (deploy always runs)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the testbed up at the end")
    parser.add_argument("--levers", help="a YAML list of {label, vars} to measure as the levers figure instead")
    parser.add_argument(
        "--json",
        help="where to write the results (default bench/results/<date>[-quick|-ci].json); the chart goes beside it",
    )
    parser.add_argument("--threads", type=int, help="load generator threads (default 16, 8 with --ci)")
    parser.add_argument("--name", help="testbed_name (container prefix, network; default bench, benchci with --ci)")
    default_ca = "/etc/ssl/certs/ca-certificates.crt"
    parser.add_argument(
        "--ca-bundle",
        default=os.environ.get("MLFLOW_ANSIBLE_CA_BUNDLE", default_ca if Path(default_ca).is_file() else ""),
        help="host CA bundle mounted into the VMs for pip/uv behind a TLS-intercepting proxy ('' for none)",
    )
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "benchci" if args.ci else "bench"
    if args.threads is None:
        args.threads = 8 if args.ci else 16
    selected = [f for f in args.only.split(",") if f] or (CI_FIGURES if args.ci else FIGURES)
    unknown = set(selected) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    # deploy first, then the others in their fixed order
    return args, ["deploy"] + [figure for figure in FIGURES[1:] if figure in selected]


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    docker = run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem) / (1 << 20), 1),
        "docker": docker,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in line
            ),
            platform.machine(),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args, figures = parse_args(argv)
    if shutil.which("docker") is None:
        print("bench/run: docker is not installed (run scripts/setup)", file=sys.stderr)
        return 2

    bench = Bench(args)
    started = dt.datetime.now(dt.UTC)
    out: dict[str, Any] = {
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "mode": bench.mode,
        "sizes": bench.sizes,
        "figures": figures,
        "machine": machine(),
        "command": "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    failed = None
    try:
        bench.up()
        for figure in figures:
            getattr(bench, f"figure_{figure}")()
    except (BenchError, subprocess.SubprocessError, OSError, RuntimeError) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {failed}")
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        if args.keep:
            log(f"--keep: the testbed {args.name} stays; work files in {bench.tmp}")
        else:
            bench.down()
            shutil.rmtree(bench.tmp, ignore_errors=True)
    status, failed, missing = outcome(bench.results, figures, bench.sizes, failed)
    out["results"] = bench.results
    out["unmeasured"] = missing
    out["failed"] = failed
    out["seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds())
    suffix = "" if bench.mode == "full" else f"-{bench.mode}"
    path = Path(args.json) if args.json else BENCH / "results" / f"{out['date']}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(table(bench.results))
    if bench.ci and "deploy" in bench.results:
        print(
            "\n(--ci: ours' cold deploy and the plain recipe's install ran at the same time, the load windows are"
            " short: the goals are shown, not enforced)"
        )
    chart = path.with_suffix(".svg")
    try:
        recorded = sorted(p for p in RECORDED.glob("*.json") if p.resolve() != path.resolve())
        write_chart(chart, recorded, current=(out, path.stem))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # the chart is a view: it never fails the run
        log(f"no chart: {type(exc).__name__}: {exc}")
        chart = None
    print(f"\nJSON: {path}" + (f"\nChart: {chart}" if chart else "") + (f"\nFAILED: {failed}" if failed else ""))
    print(f"Wall time: {out['seconds']} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
