"""The accelerator: Mitogen's strategy for every playbook the wrapper runs, when it supports this ansible-core.

Mitogen (a dependency of the package) keeps one Python interpreter per host alive for the whole run and
sends modules to it over a pipe, instead of starting Python on the target for every task: module tasks
over ssh and the ``docker`` connection run several times faster. It is a third-party *strategy* plugin
(``mitogen_linear``), so it is enabled with two settings (``ANSIBLE_STRATEGY_PLUGINS`` and
``ANSIBLE_STRATEGY``) in the child's environment; nothing of the user's configuration is changed.

It runs plain (ansible-core's own ``linear`` strategy) when:

* ``--no-accelerate`` is given, or ``MLFLOW_ANSIBLE_ACCELERATE`` is ``0``/``false``/``no``/``off``;
* the caller chose a strategy of their own (``ANSIBLE_STRATEGY``);
* Mitogen is not installed, or its version is not known to support the running ansible-core.

ansible-core 2.19 prints one deprecation warning for every third-party strategy plugin; the wrapper
knows that warning (``is_strategy_deprecation``) and reports it with the accelerator in the summary
instead of among the play's own warnings. Every other deprecation warning stays visible.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV = "MLFLOW_ANSIBLE_ACCELERATE"
STRATEGY = "mitogen_linear"
_FALSE = frozenset({"0", "false", "no", "off"})

# The oldest Mitogen release that supports each ansible-core minor version (Mitogen's changelog: 2.19
# since 0.3.25; no upper version check since 0.3.32). An ansible-core not listed runs plain.
MINIMUM_MITOGEN: dict[tuple[int, int], tuple[int, int, int]] = {
    (2, 19): (0, 3, 25),
}

_STRATEGY_DEPRECATION = re.compile(r"strategy plugins not included in ansible\.builtin", re.IGNORECASE)
_DEPRECATION_HINT = re.compile(r"Deprecation warnings can be disabled", re.IGNORECASE)


@dataclass(frozen=True)
class Accelerator:
    """Whether the next run uses Mitogen, and why not when it does not."""

    enabled: bool
    version: str = ""  # Mitogen's, when installed
    strategy_plugins: str = ""  # the directory holding mitogen_linear
    reason: str = ""  # why it runs plain

    def env(self) -> dict[str, str]:
        """The child's ANSIBLE_* settings that turn it on (nothing when off)."""
        if not self.enabled:
            return {}
        return {"ANSIBLE_STRATEGY_PLUGINS": self.strategy_plugins, "ANSIBLE_STRATEGY": STRATEGY}

    def describe(self) -> str:
        if self.enabled:
            return f"mitogen {self.version}"
        return f"off ({self.reason})"


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _ansible_core_version() -> tuple[int, ...]:
    from ansible.release import __version__

    return _version_tuple(__version__)


def _mitogen() -> tuple[str, Path] | None:
    """Mitogen's version and its strategy plugins' directory, or None when it is not installed."""
    try:
        import ansible_mitogen
        import mitogen
    except ImportError:
        return None
    strategy_dir = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return _dotted(mitogen.__version__), strategy_dir


def requested(environ: Mapping[str, str], flag: bool | None = None) -> tuple[bool, str]:
    """Whether the caller asked for the accelerator: the flag wins, then MLFLOW_ANSIBLE_ACCELERATE."""
    if flag is not None:
        return flag, "" if flag else "--no-accelerate"
    value = environ.get(ENV, "").strip().lower()
    if value in _FALSE:
        return False, f"{ENV}={environ[ENV]}"
    return True, ""


def detect(environ: Mapping[str, str] | None = None, flag: bool | None = None) -> Accelerator:
    """The accelerator for a run with ``environ`` (default os.environ) and the --no-accelerate ``flag``."""
    environ = os.environ if environ is None else environ
    wanted, why_not = requested(environ, flag)
    if not wanted:
        return Accelerator(enabled=False, reason=why_not)
    own = environ.get("ANSIBLE_STRATEGY", "").strip()
    if own and own != STRATEGY:
        return Accelerator(enabled=False, reason=f"ANSIBLE_STRATEGY={own} is set")
    found = _mitogen()
    if found is None:
        return Accelerator(enabled=False, reason="mitogen is not installed")
    version, strategy_dir = found
    core = _ansible_core_version()
    minimum = MINIMUM_MITOGEN.get(core[:2])
    core_text = _dotted(core)
    if minimum is None:
        return Accelerator(
            enabled=False, version=version, reason=f"mitogen {version} is not known to support ansible-core {core_text}"
        )
    if _version_tuple(version) < minimum:
        return Accelerator(
            enabled=False,
            version=version,
            reason=f"ansible-core {core_text} needs mitogen >= {_dotted(minimum)}, {version} is installed",
        )
    if not (strategy_dir / f"{STRATEGY}.py").is_file():
        return Accelerator(enabled=False, version=version, reason=f"no {STRATEGY} strategy in {strategy_dir}")
    return Accelerator(enabled=True, version=version, strategy_plugins=str(strategy_dir))


def is_strategy_deprecation(line: str) -> bool:
    """ansible-core's warning about third-party strategy plugins, or its "can be disabled" hint."""
    return bool(_STRATEGY_DEPRECATION.search(line) or _DEPRECATION_HINT.search(line))
