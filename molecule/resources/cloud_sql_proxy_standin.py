#!/usr/bin/env python3
"""TEST STAND-IN for Google's cloud-sql-proxy (Cloud SQL Auth Proxy v2). Not the real proxy.

The real binary cannot be downloaded in the test environments, so the tests
install this script in its place. It takes the same command line as the real v2
proxy for the flags the cloudsql_proxy role uses and forwards plain TCP bytes to
a real database, without any IAM, TLS or Cloud SQL Admin API:

    cloud-sql-proxy [--address A] [--port P] [--unix-socket DIR] [--private-ip]
                    [--auto-iam-authn] [--health-check] [--http-address A]
                    [--http-port P] [--max-sigterm-delay D] [--other-flags...]
                    PROJECT:REGION:INSTANCE[?port=P&address=A] ...

- PROJECT:REGION:INSTANCE is forwarded to the TCP host INSTANCE, port
  $STANDIN_TARGET_PORT (default 5432).
- TCP listeners: --address (default 127.0.0.1), --port (default: the engine's
  port) for the first instance, +1 for each further one, like the real proxy.
- --unix-socket DIR (DIR must exist, as for the real proxy): with
  STANDIN_ENGINE=postgres (default) the socket is DIR/PROJECT:REGION:INSTANCE/.s.PGSQL.5432
  (the real proxy always names it .s.PGSQL.5432), with STANDIN_ENGINE=mysql it is
  the file DIR/PROJECT:REGION:INSTANCE. Like the real proxy the instance
  directory is made with mode 0777 (less the umask) and the socket chmod-ed 0777:
  access is controlled by DIR's permissions.
- Once every listener is up it sends READY=1 to $NOTIFY_SOCKET (systemd
  Type=notify; the abstract "@name" form too).
- --health-check serves /startup, /liveness and /readiness on --http-address
  (default localhost) and --http-port (default 9090). /readiness is 200 only when
  every instance's target accepts a TCP connection; its body is JSON with the
  flags the stand-in was started with, so tests can check what the unit passed.
- SIGTERM: stops accepting, waits up to --max-sigterm-delay for open connections
  to close, removes its sockets and exits with 143 (0 with --exit-zero-on-sigterm),
  as the real proxy does. SIGINT exits with 130.

Python 3 standard library only: it runs with the VM's /usr/bin/python3.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse

VERSION = "2.99.0-standin"

# Flags of the real proxy that take a value; any other --flag is a switch
# unless written --flag=value.
VALUE_FLAGS = {
    "--address": "address",
    "-a": "address",
    "--port": "port",
    "-p": "port",
    "--unix-socket": "unix_socket",
    "-u": "unix_socket",
    "--http-address": "http_address",
    "--http-port": "http_port",
    "--max-sigterm-delay": "max_sigterm_delay",
    "--min-sigterm-delay": "min_sigterm_delay",
    "--credentials-file": None,
    "-c": None,
    "--json-credentials": None,
    "-j": None,
    "--token": None,
    "-t": None,
    "--login-token": None,
    "--impersonate-service-account": None,
    "--quota-project": None,
    "--sqladmin-api-endpoint": None,
    "--universe-domain": None,
    "--max-connections": None,
    "--prometheus-namespace": None,
    "--telemetry-project": None,
    "--telemetry-prefix": None,
    "--telemetry-sample-rate": None,
    "--admin-port": None,
    "--user-agent": None,
    "--config-file": None,
    "--fuse": None,
    "--fuse-tmp-dir": None,
}
SWITCHES = {
    "--private-ip": "private_ip",
    "--auto-iam-authn": "auto_iam_authn",
    "-i": "auto_iam_authn",
    "--health-check": "health_check",
    "--exit-zero-on-sigterm": "exit_zero_on_sigterm",
    "--psc": "psc",
    "--auto-ip": "auto_ip",
    "--run-connection-test": "run_connection_test",
    "--structured-logs": "structured_logs",
    "--quiet": "quiet",
    "--debug-logs": "debug_logs",
    "--prometheus": "prometheus",
    "--lazy-refresh": "lazy_refresh",
}
ENGINE_PORTS = {"postgres": 5432, "mysql": 3306}
CONN_NAME = re.compile(r"^([^:]+(:[^:]+)?):([^:]+):([^:?]+)(\?.*)?$")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class UsageError(Exception):
    pass


def log(message: str) -> None:
    print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} [stand-in] {message}", file=sys.stderr, flush=True)


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the common forms (10s, 1m30s, 500ms, 0)."""
    if text in ("0", ""):
        return 0.0
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f'invalid argument "{text}" for "--max-sigterm-delay" flag: time: invalid duration "{text}"')
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def parse_args(argv: list[str]) -> dict:
    opts: dict = {
        "address": "127.0.0.1",
        "port": None,
        "unix_socket": "",
        "http_address": "localhost",
        "http_port": "9090",
        "max_sigterm_delay": "0s",
        "instances": [],
        "unknown_flags": [],
    }
    opts.update({name: False for name in SWITCHES.values()})
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--version":
            print(f"cloud-sql-proxy version {VERSION}")
            sys.exit(0)
        if arg.startswith("-") and len(arg) > 1:
            flag, has_value, value = arg.partition("=")
            if flag in VALUE_FLAGS:
                if not has_value:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {flag}")
                    value = argv[i]
                if VALUE_FLAGS[flag]:
                    opts[VALUE_FLAGS[flag]] = value
                else:
                    opts["unknown_flags"].append(f"{flag}=<redacted>")
            elif flag in SWITCHES:
                opts[SWITCHES[flag]] = value.lower() not in ("false", "0") if has_value else True
            else:
                opts["unknown_flags"].append(flag)
        else:
            opts["instances"].append(arg)
        i += 1
    if not opts["instances"]:
        raise UsageError("missing instance_connection_name (e.g., project:region:instance)")
    return opts


class Instance:
    def __init__(self, spec: str):
        match = CONN_NAME.match(spec)
        if not match:
            raise UsageError(f"invalid instance connection name, want = PROJECT:REGION:INSTANCE, got = {spec}")
        self.name = spec.split("?", 1)[0]
        self.target_host = match.group(4)
        query = urllib.parse.parse_qs((match.group(5) or "?")[1:])
        self.address = query.get("address", [None])[0]
        self.port = int(query["port"][0]) if "port" in query else None


class Proxy:
    def __init__(self, opts: dict):
        self.opts = opts
        self.engine = os.environ.get("STANDIN_ENGINE", "postgres")
        if self.engine not in ENGINE_PORTS:
            raise UsageError(f"STANDIN_ENGINE must be postgres or mysql, not {self.engine!r}")
        self.target_port = int(os.environ.get("STANDIN_TARGET_PORT", "5432"))
        self.instances = [Instance(spec) for spec in opts["instances"]]
        self.listeners: list[tuple[Instance, socket.socket, str]] = []
        self.socket_files: list[str] = []
        self.stopping = threading.Event()
        self.started = threading.Event()
        self.open_connections = 0
        self.lock = threading.Lock()
        self.http_server: http.server.ThreadingHTTPServer | None = None

    # --- listeners -------------------------------------------------------
    def unix_path(self, inst: Instance) -> str:
        base = self.opts["unix_socket"]
        if not os.path.isdir(base):
            raise OSError(f"stat {base}: no such file or directory")
        path = os.path.join(base, inst.name)
        if self.engine == "postgres":
            if not os.path.exists(path):
                os.mkdir(path, 0o777)
            path = os.path.join(path, ".s.PGSQL.5432")
        return path

    def open_listeners(self) -> None:
        next_port = int(self.opts["port"]) if self.opts["port"] else None
        for inst in self.instances:
            use_tcp = not self.opts["unix_socket"] or inst.address or inst.port
            if use_tcp:
                if inst.port:
                    port = inst.port
                elif next_port is not None:
                    port = next_port
                    next_port += 1
                else:
                    port = ENGINE_PORTS[self.engine]
                address = inst.address or self.opts["address"]
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                where = f"{address}:{port}"
            else:
                path = self.unix_path(inst)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(path)  # like Go's net.Listen: a stale socket file is an error
                self.socket_files.append(path)
                os.chmod(path, 0o777)  # noqa: S103 (the real proxy does this; DIR guards access)
                where = path
            sock.listen(128)
            sock.settimeout(0.5)
            self.listeners.append((inst, sock, where))
            log(f"[{inst.name}] Listening on {where}")

    # --- forwarding ------------------------------------------------------
    def serve_listener(self, inst: Instance, sock: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                raise
            client.settimeout(None)
            threading.Thread(target=self.handle, args=(inst, client), daemon=True).start()

    def handle(self, inst: Instance, client: socket.socket) -> None:
        with self.lock:
            self.open_connections += 1
        try:
            try:
                server = socket.create_connection((inst.target_host, self.target_port), timeout=30)
            except OSError as exc:
                log(f"[{inst.name}] failed to connect to instance: {exc}")
                client.close()
                return
            server.settimeout(None)
            log(f"[{inst.name}] Accepted connection")
            pump = threading.Thread(target=self.copy, args=(server, client), daemon=True)
            pump.start()
            self.copy(client, server)
            pump.join()
            client.close()
            server.close()
            log(f"[{inst.name}] client closed the connection")
        finally:
            with self.lock:
                self.open_connections -= 1

    @staticmethod
    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # --- health ----------------------------------------------------------
    def targets_reachable(self) -> list[str]:
        errors = []
        for inst in self.instances:
            try:
                socket.create_connection((inst.target_host, self.target_port), timeout=2).close()
            except OSError as exc:
                errors.append(f"[{inst.name}] {inst.target_host}:{self.target_port}: {exc}")
        return errors

    def health_body(self, errors: list[str]) -> dict:
        flags = {k: v for k, v in self.opts.items() if k not in ("instances", "unknown_flags")}
        return {
            "standin": True,
            "version": VERSION,
            "status": "ok" if not errors else "error",
            "errors": errors,
            "flags": flags,
            "unknown_flags": self.opts["unknown_flags"],
            "instances": [inst.name for inst in self.instances],
            "listeners": [where for _, _, where in self.listeners],
            "engine": self.engine,
            "target_port": self.target_port,
            "argv": sys.argv[1:],
        }

    def start_health(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/liveness":
                    code, body = 200, {"status": "ok"}
                elif path == "/startup":
                    code, body = (200, {"status": "ok"}) if proxy.started.is_set() else (503, {"status": "starting"})
                elif path == "/readiness":
                    errors = [] if proxy.started.is_set() else ["not started"]
                    if proxy.stopping.is_set():
                        errors.append("shutting down")
                    errors = errors or proxy.targets_reachable()
                    code, body = (200 if not errors else 503), proxy.health_body(errors)
                else:
                    code, body = 404, {"error": "not found"}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        host = self.opts["http_address"]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("HealthServer", (http.server.ThreadingHTTPServer,), {"address_family": family})
        self.http_server = server_class((host, int(self.opts["http_port"])), Handler)
        self.http_server.daemon_threads = True
        threading.Thread(target=self.http_server.serve_forever, daemon=True).start()
        log(f"Starting health check server at {host}:{self.opts['http_port']}")

    # --- lifecycle -------------------------------------------------------
    def close(self, delay: float) -> None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            with self.lock:
                if self.open_connections == 0:
                    break
            time.sleep(0.1)
        for _, sock, _ in self.listeners:
            sock.close()
        for path in self.socket_files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if self.http_server:
            self.http_server.shutdown()
            self.http_server.server_close()


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
        delay = parse_duration(opts["max_sigterm_delay"])
        proxy = Proxy(opts)
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1

    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        proxy.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log(f"Authorizing with Application Default Credentials (stand-in: nothing is checked); version {VERSION}")
    try:
        if opts["health_check"]:
            proxy.start_health()
        proxy.open_listeners()
    except OSError as exc:
        log(f"Error: could not start: {exc}")
        proxy.close(0)
        return 1
    for inst, sock, _ in proxy.listeners:
        threading.Thread(target=proxy.serve_listener, args=(inst, sock), daemon=True).start()
    proxy.started.set()
    sd_notify("READY=1\nSTATUS=ready")
    log("The proxy has started successfully and is ready for new connections!")

    while not proxy.stopping.wait(0.5):
        pass
    signum = received[0] if received else signal.SIGTERM
    log(f"{signal.Signals(signum).name} signal received. Shutting down...")
    sd_notify("STOPPING=1")
    proxy.close(delay)
    if signum == signal.SIGINT:
        return 130
    return 0 if opts["exit_zero_on_sigterm"] else 143


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
