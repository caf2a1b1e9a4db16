"""Stable-Baselines3 on nat-gym: the GCN features extractor and the SB3 algorithms of ``nat-gym train``.

- :mod:`agents.sb3.extractor`: :class:`GCNExtractor`, a ``BaseFeaturesExtractor`` over the cell graphs;
- :mod:`agents.sb3.hyperparams`: the RL Zoo style hyper-parameter files (``agents/hyperparams/<algo>.yml``) and
  their ``key=value`` overrides;
- :mod:`agents.sb3.callbacks`: budgets (timesteps and reward evaluations), metrics rows, checkpoints;
- :mod:`agents.sb3.trainer`: ``nat-gym train --algo maskable_ppo|ppo|a2c|dqn`` (:class:`SB3Args`, :func:`train`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GCNExtractor"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): ``nat-gym --help`` finds ``agents.sb3.trainer``'s arguments without importing torch.
    if name == "GCNExtractor":
        from agents.sb3.extractor import GCNExtractor

        return GCNExtractor
    raise AttributeError(f"module 'agents.sb3' has no attribute {name!r}")
