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
    def from_ansible(cls, rc: int | None, failed_hosts: int = 0, unreachable_hosts: int = 0) -> int:
        """ansible-playbook's return code, told apart with the run's final counters where it is ambiguous.

        ansible-core returns 4 both for a parse error and for unreachable hosts (its task queue sets the
        bit 2 for failed hosts and 4 for unreachable ones, so both give 6): the counters of the PLAY RECAP
        decide. A failed host wins over an unreachable one, as documented.
        """
        if rc is None:
            return int(cls.UNEXPECTED)
        if rc in (2, 4, 6) and (failed_hosts or unreachable_hosts):
            return int(cls.HOST_FAILED if failed_hosts else cls.HOST_UNREACHABLE)
        if rc == 6:  # the bits of failed and unreachable hosts without counters to tell which
            return int(cls.HOST_FAILED)
        if rc in {member.value for member in cls}:
            return rc
        return int(cls.ERROR)
