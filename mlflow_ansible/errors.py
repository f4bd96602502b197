"""The exceptions of mlflow_ansible: one base class, each with the CLI's exit code."""

from __future__ import annotations

from collections.abc import Iterable

from mlflow_ansible.exit_codes import ExitCode


class MlflowAnsibleError(Exception):
    """Base class: a problem the user can act on, described in one line per problem."""

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str | Iterable[str]) -> None:
        self.problems: list[str] = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(self.problems))


class ValidationError(MlflowAnsibleError):
    """Options or variables rejected before anything runs (unknown name, wrong type, missing value...)."""

    exit_code = ExitCode.BAD_OPTIONS


class InventoryError(MlflowAnsibleError):
    """The inventory is missing, unreadable or cannot be parsed."""

    exit_code = ExitCode.PARSE_ERROR


class DockerUnavailableError(MlflowAnsibleError):
    """The Docker CLI is missing or its engine does not answer (the sandbox needs both)."""

    exit_code = ExitCode.ERROR


class SandboxError(MlflowAnsibleError):
    """The sandbox is not in the state the command needs (not up, or its playbook failed)."""

    exit_code = ExitCode.ERROR


class RunnerError(MlflowAnsibleError):
    """ansible-runner could not start or follow ansible-playbook."""

    exit_code = ExitCode.UNEXPECTED
