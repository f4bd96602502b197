#!/usr/bin/python
# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""Keep MLflow's AI Gateway secrets wrapped with the configured key-encryption passphrase."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlflow_gateway_kek
short_description: Keep the MLflow AI Gateway's stored secrets wrapped with one KEK passphrase
version_added: "0.1.0"
description:
  - MLflow's AI Gateway stores provider API keys in the tracking database (table C(secrets)), each
    encrypted with its own data key (DEK), which is wrapped with a key-encryption key (KEK) derived
    from E(MLFLOW_CRYPTO_KEK_PASSPHRASE) and E(MLFLOW_CRYPTO_KEK_VERSION). The server unwraps every
    secret with the one KEK of its environment, so every row must be wrapped with it.
  - This module reads the rows, and re-wraps the data keys of those wrapped with a previous
    passphrase (or with MLflow's public development passphrase, which a server without
    E(MLFLOW_CRYPTO_KEK_PASSPHRASE) uses) with O(passphrase), at a new KEK version. The secret
    values themselves are not decrypted or changed (MLflow's C(mlflow crypto rotate-kek) does the same).
  - It returns the KEK version the server's environment must carry. All rows are updated in one
    transaction, the rows locked against a concurrent run on another host (PostgreSQL, MySQL).
    A row that no given passphrase unwraps fails the task and nothing is changed.
  - Stop every server using the database before a run that re-wraps (check mode tells), as a server
    still running with the old KEK cannot read the secrets afterwards, and would wrap new ones
    with the old key.
  - Runs with the Python of MLflow's virtual environment (SQLAlchemy, the database driver and
    C(mlflow.utils.crypto)); MLflow is imported only when there are secrets to check.
options:
  backend_store_uri:
    description:
      - SQLAlchemy URI of the tracking database (the server's E(MLFLOW_BACKEND_STORE_URI)).
      - A database without the C(secrets) table (not migrated yet) has nothing to wrap.
    type: str
    required: true
  passphrase:
    description: The KEK passphrase the server runs with (at least 32 characters).
    type: str
    required: true
  previous_passphrases:
    description:
      - Passphrases that may have wrapped some rows before (after a rotation, or a vault change).
    type: list
    elements: str
    default: []
  include_default_passphrase:
    description:
      - Also try MLflow's public development passphrase, which wraps every secret created by a server
        that had no E(MLFLOW_CRYPTO_KEK_PASSPHRASE).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports the rows it would re-wrap and the version it would set; writes nothing.
  diff_mode:
    support: full
    description: Shows the KEK version and how many rows were wrapped with an old passphrase.
requirements:
  - mlflow >= 3.5 (its C(mlflow.utils.crypto)), SQLAlchemy and the database driver, in the interpreter
    running the module
author:
  - mlflow-ansible developers (@mlflow-ansible)
"""

EXAMPLES = r"""
- name: Wrap the AI Gateway secrets with this deployment's passphrase
  mlflow_ansible.tracking.mlflow_gateway_kek:
    backend_store_uri: "{{ backend_uri }}"
    passphrase: "{{ kek_passphrase }}"
    previous_passphrases: ["{{ old_kek_passphrase }}"]
  vars:
    ansible_python_interpreter: /opt/mlflow/venv/bin/python
  register: kek
  no_log: true

- name: Give the server the version the rows carry
  ansible.builtin.debug:
    msg: "MLFLOW_CRYPTO_KEK_VERSION={{ kek.kek_version }}"
"""

RETURN = r"""
kek_version:
  description: The KEK version every secret is wrapped with after the run (1 when there are none).
  returned: always
  type: int
  sample: 2
secrets:
  description: How many gateway secrets the database holds.
  returned: always
  type: int
  sample: 3
rewrapped:
  description: How many were (or, in check mode, would be) re-wrapped.
  returned: always
  type: int
  sample: 3
"""

import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

try:
    import sqlalchemy
    from sqlalchemy.pool import NullPool
except ImportError:
    sqlalchemy = None
    SQLALCHEMY_IMPORT_ERROR = traceback.format_exc()
else:
    SQLALCHEMY_IMPORT_ERROR = None

MINIMUM_PASSPHRASE = 32
_LOCKING_DIALECTS = ("postgresql", "mysql", "mariadb")


class KeyRing:
    """KEKs derived on demand (PBKDF2 with 600,000 rounds each: derive every key once)."""

    def __init__(self, crypto, passphrases):
        self._crypto = crypto
        self._passphrases = passphrases
        self._keys = {}

    def key(self, index, version):
        if (index, version) not in self._keys:
            manager = self._crypto.KEKManager(passphrase=self._passphrases[index], kek_version=version)
            self._keys[(index, version)] = manager.get_kek()
        return self._keys[(index, version)]

    def unwrap(self, wrapped_dek, version):
        """The DEK and the index of the passphrase that unwrapped it (0 is the current one), or None."""
        for index in range(len(self._passphrases)):
            try:
                return self._crypto.unwrap_dek(wrapped_dek, self.key(index, version)), index
            except self._crypto.MlflowException:  # a wrong key: try the next passphrase
                pass
        return None


def _read_rows(connection):
    if not sqlalchemy.inspect(connection).has_table("secrets"):
        return None
    lock = " FOR UPDATE" if connection.dialect.name in _LOCKING_DIALECTS else ""
    query = sqlalchemy.text(f"SELECT secret_id, secret_name, wrapped_dek, kek_version FROM secrets{lock}")  # noqa: S608
    return connection.execute(query).all()


def _plan(rows, ring):
    """(target version, [(secret_id, dek)] to re-wrap, [names nothing unwraps])."""
    top = max(row.kek_version for row in rows)
    unwrapped = {row.secret_id: ring.unwrap(bytes(row.wrapped_dek), row.kek_version) for row in rows}
    lost = sorted(
        f"{row.secret_name} (kek_version {row.kek_version})" for row in rows if unwrapped[row.secret_id] is None
    )
    if lost:
        return top, [], lost
    current = [row for row in rows if row.kek_version == top and unwrapped[row.secret_id][1] == 0]
    # The newest version stays when rows already use this passphrase there; else the next one (as
    # MLflow's rotate-kek does): a KEK version then never names two passphrases.
    target = top if current else top + 1
    todo = [
        (row.secret_id, unwrapped[row.secret_id][0])
        for row in rows
        if not (row.kek_version == target and unwrapped[row.secret_id][1] == 0)
    ]
    return target, todo, []


def _redact(message, secrets):
    for secret in secrets:
        if secret:
            message = message.replace(secret, "********")
    return message


def run(module):
    params = module.params
    passphrase = params["passphrase"]
    if len(passphrase) < MINIMUM_PASSPHRASE:
        module.fail_json(msg=f"passphrase: at least {MINIMUM_PASSPHRASE} characters are needed, got {len(passphrase)}")
    url = sqlalchemy.engine.make_url(params["backend_store_uri"])
    hidden = [url.password or "", passphrase, *params["previous_passphrases"]]
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    result = {"changed": False, "kek_version": 1, "secrets": 0, "rewrapped": 0}
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            rows = _read_rows(connection)
            if not rows:
                result["diff"] = {"before": "kek_version: 1 (no secrets)\n", "after": "kek_version: 1 (no secrets)\n"}
                return result
            from mlflow.utils import crypto

            passphrases = [passphrase, *[p for p in params["previous_passphrases"] if p and p != passphrase]]
            if params["include_default_passphrase"] and crypto.DEFAULT_KEK_PASSPHRASE not in passphrases:
                passphrases.append(crypto.DEFAULT_KEK_PASSPHRASE)
            ring = KeyRing(crypto, passphrases)
            target, todo, lost = _plan(rows, ring)
            if lost:
                transaction.rollback()
                module.fail_json(
                    msg="these AI Gateway secrets are wrapped with a passphrase not given (neither the passphrase "
                    "nor a previous one): " + ", ".join(lost) + "; nothing was changed",
                    secrets=len(rows),
                )
            before = sorted({row.kek_version for row in rows})
            result.update(kek_version=target, secrets=len(rows), rewrapped=len(todo), changed=bool(todo))
            result["diff"] = {
                "before": f"kek_version: {', '.join(map(str, before))} ({len(todo)} of {len(rows)} secrets "
                "wrapped with another key)\n",
                "after": f"kek_version: {target} ({len(rows)} secrets wrapped with the passphrase)\n",
            }
            if not todo or module.check_mode:
                transaction.rollback()
                return result
            new_key = ring.key(0, target)
            update = sqlalchemy.text(
                "UPDATE secrets SET wrapped_dek = :dek, kek_version = :version WHERE secret_id = :id"
            )
            for secret_id, dek in todo:
                connection.execute(update, {"dek": crypto.wrap_dek(dek, new_key), "version": target, "id": secret_id})
            transaction.commit()
            return result
    except sqlalchemy.exc.SQLAlchemyError as exc:
        module.fail_json(msg=_redact(f"the tracking database could not be read or updated: {exc}", hidden))
    finally:
        engine.dispose()


def main():
    module = AnsibleModule(
        argument_spec={
            "backend_store_uri": {"type": "str", "required": True, "no_log": True},
            "passphrase": {"type": "str", "required": True, "no_log": True},
            "previous_passphrases": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "include_default_passphrase": {"type": "bool", "default": True, "no_log": False},
        },
        supports_check_mode=True,
    )
    if sqlalchemy is None:
        module.fail_json(msg=missing_required_lib("SQLAlchemy"), exception=SQLALCHEMY_IMPORT_ERROR)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
