"""Evaluation beyond one process: a pool of Ray actors behind nat-gym's evaluator protocol (optional extra ``ray``).

See :mod:`nat_gym.distributed.ray_evaluator`. (The torchrun / DistributedDataParallel plumbing of the trainings is
:mod:`nat_gym.final.distributed`.)
"""

from nat_gym.distributed.ray_evaluator import (
    RAY_MISSING,
    RayEvaluator,
    RayPool,
    check_cluster,
    connect,
    ray_available,
)

__all__ = ["RAY_MISSING", "RayEvaluator", "RayPool", "check_cluster", "connect", "ray_available"]
