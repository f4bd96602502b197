"""Mitogen's linear strategy (the accelerator), found by name: .config/molecule/config.yml points
ANSIBLE_STRATEGY_PLUGINS at this directory, so the molecule scenarios need no site-packages path.

The wrapper (mlflow_ansible/accelerator.py) points at Mitogen's own directory instead; this file only
re-exports Mitogen's plugin class.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
