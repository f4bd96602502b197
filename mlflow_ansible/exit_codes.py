"""Exit codes of the CLI, the same as ansible-playbook's where they overlap."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `python -m mlflow_ansible` returns (documented in docs/cli.md)."""

    OK = 0
    ERROR = 1  # an error: Ansible's generic failure, Docker missing, a sandbox that is not up
    HOST_FAILED = 2  # a task failed on at least one host
    HOST_UNREACHABLE = 3  # at least one host could not be reached (and none failed)
    PARSE_ERROR = 4  # the inventory is missing, unreadable or cannot be parsed; a playbook parse error
    BAD_OPTIONS = 5  # bad options or variables, rejected before anything runs
    INTERRUPTED = 99  # Ctrl-C
    UNEXPECTED = 250  # a bug: an unexpected exception

    @classmethod
    def from_ansible(cls, rc: int | None) -> int:
        """ansible-playbook's return code, kept as is when it is one of the documented ones."""
        if rc is None:
            return int(cls.UNEXPECTED)
        if rc in {member.value for member in cls}:
            return rc
        return int(cls.ERROR)
