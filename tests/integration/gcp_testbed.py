"""The GCP testbed: Google's own client code, unmodified, against STAND-INS of Google's APIs.

Nothing here reaches Google. One container runs molecule/resources/google_apis_standin.py, a TEST
STAND-IN for the Compute Engine API, the metadata server, OAuth2's token endpoint, Cloud Storage's JSON
API (a TLS and bearer-token front on gcp-storage-emulator) and the Cloud SQL Admin API. The names Google's
libraries hard-code (compute.googleapis.com, www.googleapis.com, storage.googleapis.com,
oauth2.googleapis.com, sqladmin.googleapis.com, metadata.google.internal) point at it through /etc/hosts:

- the controller: a container on an internal Docker network (no route out) running this checkout's
  ansible-playbook and ansible-inventory, as from a bastion; its Application Default Credentials are a
  service-account key generated here (GOOGLE_APPLICATION_CREDENTIALS), exchanged at the token stand-in;
- the VM: a systemd container of the usual testbed (PostgreSQL for Cloud SQL, gcp-storage-emulator behind
  the storage stand-in) reached over SSH at the networkIP the Compute stand-in reports; its server gets
  its tokens from the metadata stand-in (keyless) or signs with a key file.

Both trust a CA made here, and only for these names. Test configuration that production never sets:
REQUESTS_CA_BUNDLE (the test CA) and GCE_METADATA_IP=metadata.google.internal (google-auth pings
169.254.169.254 to detect Compute Engine; the testbed has no link-local address to give it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.tls_material import write_ca_and_server_certificate

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GOOGLE_NAMES = [
    "compute.googleapis.com",
    "www.googleapis.com",
    "storage.googleapis.com",
    "oauth2.googleapis.com",
    "sqladmin.googleapis.com",
    "metadata.google.internal",
]
PROJECT = "my-gcp-project"  # inventory/gcp.yml's, unchanged
ZONE = "europe-west1-b"
VM_ACCOUNT = f"mlflow-vm@{PROJECT}.iam.gserviceaccount.com"
VM_CA = "/usr/local/share/google-standin-ca.crt"
STORAGE_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def docker(*args: str, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr or proc.stdout}")
    return proc.stdout.strip()


def make_tls(directory: Path) -> None:
    """A CA and a server certificate for every name the stand-in answers to."""
    write_ca_and_server_certificate(directory, GOOGLE_NAMES, ca_name="mlflow-ansible test CA (Google stand-in)")


@dataclass
class ServiceAccountKey:
    """A service-account JSON key made here, and what the token stand-in needs to check its signatures."""

    email: str
    path: Path
    public: dict = field(default_factory=dict)

    @classmethod
    def generate(cls, name: str, directory: Path) -> ServiceAccountKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = uuid.uuid4().hex
        email = f"{name}@{PROJECT}.iam.gserviceaccount.com"
        document = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": key_id,
            "private_key": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "client_email": email,
            "client_id": str(uuid.uuid4().int)[:21],
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }
        path = directory / f"{name}.json"
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        numbers = key.public_key().public_numbers()
        return cls(email, path, {"client_email": email, "private_key_id": key_id, "n": numbers.n, "e": numbers.e})


@dataclass
class GcpTestbed:
    name: str
    work: Path
    ca_bundle: str
    standin_ip: str = ""
    vm_ip: str = ""
    internal_subnet: str = ""
    controller_key: ServiceAccountKey | None = None
    vm_key: ServiceAccountKey | None = None

    @property
    def internal(self) -> str:
        return f"{self.name}-internal"

    @property
    def vm(self) -> str:
        return f"{self.name}-vm"

    @property
    def controller(self) -> str:
        return f"{self.name}-controller"

    @property
    def standin(self) -> str:
        return f"{self.name}-googleapis"

    # The testbed ---------------------------------------------------------------------------------------

    def testbed_playbook(self, state: str) -> None:
        extra = {
            "testbed_state": state,
            "testbed_name": self.name,
            "testbed_vms": [{"name": "vm", "image": "mlflow-ansible/ssh:testbed"}],
            "testbed_db_password": "gcp-db-password",
            "testbed_ca_bundle": self.ca_bundle,
        }
        environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "mlflow_ansible.tracking.testbed", "-e", json.dumps(extra)],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

    def destroy(self) -> None:
        self.testbed_playbook("absent")  # every container labelled with the testbed's name
        docker("network", "rm", self.internal, check=False)

    def create(self) -> None:
        self.destroy()
        self.testbed_playbook("present")
        label = f"mlflow-ansible.testbed={self.name}"
        docker("network", "create", "--internal", "--label", label, self.internal)
        self.internal_subnet = docker(
            "network", "inspect", self.internal, "--format", "{{(index .IPAM.Config 0).Subnet}}"
        )
        make_tls(self.work / "tls")
        # The stand-in: on the testbed's network (it proxies storage to gcp-storage-emulator at gcs:9023, and
        # the test reads its request log there) and on the internal one (the controller's only network).
        # Listening on every address of its own container (--host): the testbed's network and the internal one.
        standin = ["python3", "/standin/google_apis_standin.py", "--host", "0.0.0.0"]  # noqa: S104
        standin += ["--tls-port", "443", "--http-port", "80", "--cert", "/tls/server.crt", "--key", "/tls/server.key"]
        standin += ["--storage-upstream", "http://gcs:9023"]
        mounts = ["--volume", f"{REPO / 'molecule/resources'}:/standin:ro", "--volume", f"{self.work / 'tls'}:/tls:ro"]
        docker(
            "run", "--detach", "--name", self.standin, "--hostname", "googleapis", "--label", label,
            "--network", self.name, *mounts, "--entrypoint", standin[0], "mlflow-ansible/debian:12", *standin[1:],
        )  # fmt: skip
        docker("network", "connect", self.internal, self.standin)
        docker("network", "connect", self.internal, self.vm)
        self.standin_ip = self.ip_on(self.standin, self.internal)
        self.vm_ip = self.ip_on(self.vm, self.internal)
        self.wait_standin()

        # The VM: Google's names to the stand-in, the test CA beside the system's, root's SSH key.
        hosts = "".join(f"{self.standin_ip} {name}\n" for name in GOOGLE_NAMES)
        docker("exec", "-i", self.vm, "sh", "-c", "cat >> /etc/hosts", stdin=hosts)
        docker("cp", str(self.work / "tls/ca.crt"), f"{self.vm}:{VM_CA}")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.work / "id_ed25519")], check=True)
        docker(
            "exec",
            "-i",
            self.vm,
            "sh",
            "-c",
            "umask 077; cat > /root/.ssh/authorized_keys",
            stdin=(self.work / "id_ed25519.pub").read_text(),
        )

        # The controller: only on the internal network; this checkout, its venv and the Python that venv
        # runs on mounted where they are here; the keys and files of the test in its work directory.
        self.controller_key = ServiceAccountKey.generate("ansible-controller", self.work)
        self.vm_key = ServiceAccountKey.generate("mlflow-key", self.work)
        (self.work / "home").mkdir(exist_ok=True)
        mounts = {str(REPO): "ro", sys.prefix: "ro", sys.base_prefix: "ro", str(self.work): "rw"}
        run = [
            "run",
            "--detach",
            "--name",
            self.controller,
            "--hostname",
            "controller",
            "--label",
            label,
            "--network",
            self.internal,
            "--entrypoint",
            "sleep",
        ]
        for name in GOOGLE_NAMES:
            run += ["--add-host", f"{name}:{self.standin_ip}"]
        for path, mode in mounts.items():
            run += ["--volume", f"{path}:{path}:{mode}"]
        docker(*run, "mlflow-ansible/ssh:testbed", "infinity")
        self.check_names()
        self.reset()

    @staticmethod
    def ip_on(container: str, network: str) -> str:
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        return docker("inspect", container, "--format", template)

    def check_names(self) -> None:
        """Fail fast unless every Google name resolves to the stand-in on both sides, and the controller
        has no route out (nothing must leave the testbed)."""
        for container in (self.controller, self.vm):
            for name in GOOGLE_NAMES:
                answer = docker("exec", container, "getent", "hosts", name, check=False).split()
                assert answer and answer[0] == self.standin_ip, f"{name} resolves to {answer} in {container}"
        subnet = ipaddress.ip_network(self.internal_subnet)
        assert ipaddress.ip_address(self.standin_ip) in subnet
        # No route out: Docker drops what an internal network sends elsewhere, and names outside do not resolve.
        assert docker("network", "inspect", self.internal, "--format", "{{.Internal}}") == "true"
        outside = docker("exec", self.controller, "getent", "hosts", "pypi.org", check=False)
        assert not outside, f"the controller resolves pypi.org: {outside}"

    # The stand-in --------------------------------------------------------------------------------------

    @property
    def control(self) -> str:
        return f"http://{self.ip_on(self.standin, self.name)}"

    def wait_standin(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.requests()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        "the Google stand-in did not answer: " + docker("logs", self.standin, check=False)
                    ) from None
                time.sleep(0.5)

    def _call(self, method: str, path: str, body: object | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the testbed's stand-in, over http
            self.control + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - as above
            return json.loads(answer.read() or b"null")

    def settings(self, **overrides: object) -> dict:
        base = {
            "project_id": PROJECT,
            "numeric_project_id": "123456789012",
            "service_account": VM_ACCOUNT,
            "scopes": STORAGE_SCOPES,
            "instance_name": "mlflow-1",
            "instance_zone": ZONE,
            "service_account_keys": [self.controller_key.public, self.vm_key.public],
            "instances": [
                # The tracking server: labelled and running.
                {
                    "project": PROJECT,
                    "zone": ZONE,
                    "name": "mlflow-1",
                    "status": "RUNNING",
                    "labels": {"mlflow": "tracking", "env": "prod"},
                    "networkIP": self.vm_ip,
                    "natIP": "203.0.113.10",
                    "tags": ["mlflow"],
                },
                # Labelled but stopped, and running but not labelled: neither is a tracking server.
                {
                    "project": PROJECT,
                    "zone": ZONE,
                    "name": "mlflow-old",
                    "status": "TERMINATED",
                    "labels": {"mlflow": "tracking", "env": "prod"},
                    "networkIP": "10.128.0.7",
                    "tags": ["mlflow"],
                },
                {
                    "project": PROJECT,
                    "zone": "us-central1-a",
                    "name": "build-agent",
                    "status": "RUNNING",
                    "labels": {"team": "ci"},
                    "networkIP": "10.128.0.8",
                    "natIP": "203.0.113.11",
                },
            ],
        }
        base.update(overrides)
        return base

    def reset(self, **overrides: object) -> None:
        self._call("POST", "/_standin/reset", self.settings(**overrides))

    def requests(self) -> list[dict]:
        return self._call("GET", "/_standin/requests")  # type: ignore[return-value]

    def firewalls(self) -> dict:
        return self._call("GET", "/_standin/firewalls")  # type: ignore[return-value]

    # Commands on the controller and the VM ---------------------------------------------------------------

    def on_controller(self, *argv: str, extra_vars: dict | None = None) -> subprocess.CompletedProcess:
        environ = {
            "HOME": str(self.work / "home"),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_LOCAL_TEMP": str(self.work / "home/.ansible/tmp"),
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
            # The accelerator as the wrapper runs it (Mitogen; its strategy plugin in molecule/resources).
            "ANSIBLE_STRATEGY_PLUGINS": str(REPO / "molecule/resources/strategy"),
            "ANSIBLE_STRATEGY": os.environ.get("MLFLOW_ANSIBLE_STRATEGY", "mitogen_linear"),
            # The controller's Application Default Credentials: a service-account key.
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.controller_key.path),
            "REQUESTS_CA_BUNDLE": str(self.work / "tls/ca.crt"),
            "PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        }
        command = ["exec", "--workdir", str(REPO)]
        for key, value in environ.items():
            command += ["--env", f"{key}={value}"]
        if extra_vars is not None:
            vars_file = self.work / f"vars-{uuid.uuid4().hex[:8]}.json"
            vars_file.write_text(json.dumps(extra_vars))
            argv = (*argv, "-e", f"@{vars_file}")
        return subprocess.run(["docker", *command, self.controller, *argv], capture_output=True, text=True, check=False)

    def deploy_vars(self, **overrides: object) -> dict:
        variables = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.work / "id_ed25519"),
            "cloudsql_client_host": "postgres",
            "cloudsql_client_password": "gcp-db-password",
            "tracking_server_artifacts_destination": "gs://mlflow-artifacts/gcp",
            "tracking_server_controller_secrets_dir": str(self.work / "secrets"),
            # Test configuration (see the module's docstring): trust the test CA for Google's names, and
            # let google-auth find the metadata server by name.
            "tracking_server_extra_env": {"REQUESTS_CA_BUNDLE": VM_CA, "GCE_METADATA_IP": "metadata.google.internal"},
            "mlflow_ca_bundle": "/usr/local/share/testbed-ca.crt" if self.ca_bundle else "",
            "firewall_https_cidrs": [self.internal_subnet],
            "firewall_ssh_cidrs": [self.internal_subnet],
            "firewall_gcp_rule": True,
            "firewall_gcp_project": PROJECT,
        }
        variables.update(overrides)
        return variables

    def deploy(self, **overrides: object) -> subprocess.CompletedProcess:
        return self.on_controller(
            "ansible-playbook", "site.yml", "-i", "inventory/gcp.yml", extra_vars=self.deploy_vars(**overrides)
        )

    def on_vm(self, *argv: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        command = ["docker", "exec"]
        for key, value in (environ or {}).items():
            command += ["--env", f"{key}={value}"]
        return subprocess.run([*command, self.vm, *argv], capture_output=True, text=True, check=False)

    def admin_password(self) -> str:
        return next((self.work / "secrets").glob("*/admin-password")).read_text().strip()
