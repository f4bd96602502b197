"""The environment of the ansible-playbook process: an allow-list of the caller's, plus what the wrapper sets."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from mlflow_ansible.collection import Collection
from mlflow_ansible.env_vars import VARS_PLUGIN

# Passed through from the caller's environment when set; nothing else is (no stray tokens or keys).
ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "XDG_STATE_HOME",  # where generated secrets and the sandbox state live
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSH_AUTH_SOCK",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "CLOUDSDK_CONFIG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "VIRTUAL_ENV",
    }
)
# LC_* locale settings; ANSIBLE_* configuration (ANSIBLE_CONFIG, ANSIBLE_REMOTE_USER, ...); GCP_* settings of
# the google.cloud collection (GCP_PROJECT, GCP_AUTH_KIND, ...).
ALLOWED_PREFIXES = ("LC_", "ANSIBLE_", "GCP_")
DEFAULT_COLLECTIONS_PATH = "~/.ansible/collections:/usr/share/ansible/collections"
DEFAULT_VARS_PLUGINS = "host_group_vars"


def is_allowed(name: str) -> bool:
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def allowed_subset(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if is_allowed(name)}


def _prepend_path(first: str, rest: str | None) -> str:
    parts = [first] + [part for part in (rest or "").split(os.pathsep) if part and part != first]
    return os.pathsep.join(parts)


def wrapper_settings(environ: Mapping[str, str], collection: Collection) -> dict[str, str]:
    """The ANSIBLE_* settings (and PATH) the wrapper sets for every run."""
    plugins = [p for p in (environ.get("ANSIBLE_VARS_ENABLED") or DEFAULT_VARS_PLUGINS).split(",") if p.strip()]
    if VARS_PLUGIN not in plugins:
        plugins.append(VARS_PLUGIN)
    return {
        # This interpreter's ansible-playbook first, whether or not its venv is activated.
        "PATH": _prepend_path(str(Path(sys.executable).parent), environ.get("PATH") or os.defpath),
        # The collection that belongs to this package first; the usual places (and site-packages) after.
        "ANSIBLE_COLLECTIONS_PATH": _prepend_path(
            str(collection.collections_path), environ.get("ANSIBLE_COLLECTIONS_PATH") or DEFAULT_COLLECTIONS_PATH
        ),
        "ANSIBLE_VARS_ENABLED": ",".join(plugins),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }


def restrict(
    runner_env: Mapping[str, str], seeded_from: Mapping[str, str], caller: Mapping[str, str]
) -> dict[str, str]:
    """ansible-runner's environment reduced to its own additions plus the allowed part of ``caller``'s.

    ansible-runner seeds the child's environment with a copy of ``seeded_from`` (this process's environment)
    and adds its settings (callback plugin, AWX_ISOLATED_DATA_DIR, ...): keep those additions, and of the
    caller's environment only the allowed variables.
    """
    added = {name: value for name, value in runner_env.items() if seeded_from.get(name) != value}
    return {**allowed_subset(caller), **added}
