"""BlockQNN's block search space (pure data, no torch): the NSC layer code, :class:`Block`, its canonical form,
exact cost and density, and a registry of named blocks.

``nat_gym.blocks.cost`` counts parameters and FLOPs of the stacked network; ``nat_gym.blocks.named`` holds the named
blocks; ``nat_gym.blocks.plotting`` draws a block (matplotlib, imported on use).
"""

from __future__ import annotations

from nat_gym.blocks.nsc import (
    DEFAULT_MAX_INDEX,
    KINDS,
    Block,
    Layer,
    action_to_layer,
    layer_to_action,
    num_actions,
)

__all__ = ["Block", "Layer", "KINDS", "DEFAULT_MAX_INDEX", "num_actions", "action_to_layer", "layer_to_action"]
