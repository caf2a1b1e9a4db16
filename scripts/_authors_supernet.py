"""The authors' supernet as a third benchmark arm: imported at run time from a user's checkout of their NAT code.

The NAT authors' code (github.com/guoyongcs/NAT, NeurIPS 2019) cannot ship with nat-gym; ``bench_supernet.py
--reference-dir DIR`` imports it from ``DIR`` (``search_model.NASNetwork``, ``operations.OPS``) and times its SGD step
(``NASNetwork.step``, what ``train_search.py``'s ``update_w`` runs per minibatch) beside nat-gym's. Nothing of their
code is copied here: this module builds their network at nat-gym's size and op list, copies nat-gym's weights in
(through the plain baseline, whose parameters come in the same order) and hands it nat-gym's sampled architectures.

What it changes on their network, and why (the benchmark prints the ops supplied and the packages stood in):

- **op list**: their repository has NAT's two 9-op lists (``FULLY_CONCAT_PRIMITIVES``, ``LOOSE_END_PRIMITIVES``);
  nat-gym's default is NAT++'s 13 ops. The list is registered under a new name in their ``genotypes`` module (their
  ``NASOp`` looks it up by name); ops their ``OPS`` factory lacks (``max_pool_5x5``) are built by nat-gym's
  :func:`nat_gym.ops.build_op` (the same ``nn.MaxPool2d``), wrapped in a BN as their ``NASOp`` wraps every pool.
- **stem**: theirs is ``Conv2d(3, ...)`` for CIFAR and an affine BN; it becomes nat-gym's (``in_channels`` inputs,
  BN without affine parameters), so both networks hold the same parameters.
- **policy**: their ``NASNetwork`` also builds the GCN policy (``ArchTransformer``, from Kipf's ``pygcn`` package);
  the supernet step never uses it, so it is not built. When ``pygcn`` or ``graphviz`` (their drawing helpers) is not
  installed, the import gets an empty stand-in whose classes raise if they are ever constructed.
- **step**: theirs has no gradient clipping (nat-gym and the plain baseline clip at 5), and their ``update_w`` calls
  ``model.train()`` before every step (the benchmark times that switch separately and prints the ratio with it).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nat_gym.errors import ConfigError
from nat_gym.genotype import Cell, Genotype
from nat_gym.ops import build_op
from nat_gym.supernet.config import SupernetConfig

REQUIRED_FILES = ("search_model.py", "operations.py", "genotypes.py", "utils.py")
"""The files of their repository the arm imports (``search_model`` imports the other three)."""

OP_LIST_NAME = "NAT_GYM_BENCH_PRIMITIVES"
"""The name under which nat-gym's op list is registered in their ``genotypes`` module."""

_THEIR_MODULES = ("search_model", "operations", "genotypes", "utils")


def check_reference_dir(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it holds :data:`REQUIRED_FILES`; else a one-line :class:`ConfigError`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"--reference-dir: {str(path)!r} is not a directory; expected a checkout of "
                          "github.com/guoyongcs/NAT")  # fmt: skip
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise ConfigError(f"--reference-dir: {str(path)!r} lacks {', '.join(missing)}; expected a checkout of "
                          f"github.com/guoyongcs/NAT (with {', '.join(REQUIRED_FILES)})")  # fmt: skip
    return root.resolve()


class _Unavailable:
    """Stands in for a class of a package that is not installed and that the supernet never uses."""

    package = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ImportError(f"{type(self).__name__}: package {self.package!r} is not installed")


def _stand_in(name: str, **classes: str) -> types.ModuleType:
    module = types.ModuleType(name)
    for cls in classes:
        setattr(module, cls, type(cls, (_Unavailable,), {"package": classes[cls]}))
    return module


@contextmanager
def _missing_packages_stood_in() -> Iterator[list[str]]:
    """During the block, ``import pygcn.layers`` and ``import graphviz`` work even where they are not installed
    (their policy and drawing helpers; the supernet needs neither); yields the names stood in."""
    stand_ins = {}
    if importlib.util.find_spec("pygcn") is None:
        stand_ins["pygcn"] = _stand_in("pygcn")
        stand_ins["pygcn.layers"] = _stand_in("pygcn.layers", GraphConvolution="pygcn")
        stand_ins["pygcn"].layers = stand_ins["pygcn.layers"]
    if importlib.util.find_spec("graphviz") is None:
        stand_ins["graphviz"] = _stand_in("graphviz", Digraph="graphviz")
    sys.modules.update(stand_ins)
    try:
        yield sorted(n for n in stand_ins if "." not in n)
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)


def import_reference(root: Path) -> tuple[types.ModuleType, types.ModuleType, list[str]]:
    """Import their ``search_model`` and ``genotypes`` from ``root`` (a checked :func:`check_reference_dir`);
    returns them and the packages stood in. Errors: :class:`ConfigError` (one line) if the import fails or the
    modules lack ``NASNetwork`` / ``OPS``."""
    for name in _THEIR_MODULES:  # generic names: make sure these come from root
        if name in sys.modules and Path(getattr(sys.modules[name], "__file__", "") or "").parent != root:
            raise ConfigError(f"--reference-dir: a module named {name!r} is already imported from elsewhere "
                              f"({sys.modules[name].__file__})")  # fmt: skip
    sys.path.insert(0, str(root))
    try:
        with _missing_packages_stood_in() as stood_in:
            search_model = importlib.import_module("search_model")
            genotypes = importlib.import_module("genotypes")
    except Exception as e:  # their code, any failure: one line naming it
        raise ConfigError(f"--reference-dir: importing {root / 'search_model.py'} failed: "
                          f"{type(e).__name__}: {e}") from None  # fmt: skip
    finally:
        sys.path.remove(str(root))
    for module, attr in ((search_model, "NASNetwork"), (search_model, "OPS")):
        if not hasattr(module, attr):
            raise ConfigError(f"--reference-dir: {module.__file__} has no {attr!r}; expected the authors' NAT code")
    return search_model, genotypes, stood_in


def build_reference(cfg: SupernetConfig, search_model: types.ModuleType, genotypes: types.ModuleType,
                    plain: nn.Module) -> tuple[nn.Module, list[str]]:  # fmt: skip
    """Their ``NASNetwork`` at the size and op list of ``cfg``, with the weights of ``plain`` (a
    ``PlainSupernet`` of ``cfg``) copied in; returns it (in train mode) and the ops nat-gym supplied to their factory.

    Errors: :class:`ConfigError` if a parameter's shape differs (their network is not the expected one)."""
    their_ops = search_model.OPS  # the dict their NASOp reads (``from operations import *``)
    # ops their factory lacks (a partial: supplied by an earlier call of this function)
    supplied = [op for op in cfg.ops if isinstance(their_ops.get(op), partial) or op not in their_ops]
    for op in supplied:  # called as their factory is: OPS[op](C, stride, affine)
        their_ops[op] = partial(build_op, op)
    setattr(genotypes, OP_LIST_NAME, list(cfg.ops))

    class SupernetOnly(search_model.NASNetwork):
        def _initialize_arch_transformer(self) -> None:  # the GCN policy: not part of the supernet step
            self._transformer_parameters = []

    net = SupernetOnly(cfg.C, cfg.num_classes, cfg.layers, nn.CrossEntropyLoss(), torch.device("cpu"),
                       steps=cfg.steps, stem_multiplier=cfg.stem_multiplier, op_type=OP_LIST_NAME)  # fmt: skip
    c_stem = cfg.stem_multiplier * cfg.C
    net.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, c_stem, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_stem, affine=False))  # fmt: skip
    theirs, ours = list(net.model_parameters()), list(plain.parameters())
    if len(theirs) != len(ours):
        raise ConfigError(f"--reference-dir: their network has {len(theirs)} parameter tensors, nat-gym's {len(ours)}")
    with torch.no_grad():
        for k, (p, q) in enumerate(zip(theirs, ours)):
            if p.shape != q.shape:
                raise ConfigError(f"--reference-dir: parameter {k} has shape {tuple(p.shape)} in their network, "
                                  f"{tuple(q.shape)} in nat-gym's")  # fmt: skip
            p.copy_(q)
    net.train()
    return net, supplied


def to_arch(cell: Cell, ops: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """A nat-gym cell in their ``arch`` form: ``(op index, from, to)`` triples sorted by ``to`` (their
    ``NASCell.forward`` docstring); fully-concat cells only (their concat is fixed when the network is built)."""
    if cell.output_mode != "fully_concat":
        raise ConfigError(f"cell.concat: their supernet is built fully-concat here, got {list(cell.concat)}")
    return sorted(((ops.index(e.op), e.src, e.dst) for e in cell.edges), key=lambda t: t[2])


def reference_logits(net: nn.Module, x: torch.Tensor, genotype: Genotype, ops: tuple[str, ...]) -> torch.Tensor:
    """Their single-path forward (``NASNetwork._inner_forward``) of ``genotype``.

    Shapes:
        - x: ``[B, in_channels, H, W]``
        - output: logits ``[B, num_classes]``
    """
    return net._inner_forward(x, to_arch(genotype.normal, ops), to_arch(genotype.reduce, ops))


def reference_train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                         genotype: Genotype, ops: tuple[str, ...]) -> torch.Tensor:  # fmt: skip
    """Their SGD step (``NASNetwork.step``: ``zero_grad``, forward, loss, backward, ``step``) on ``genotype``: their
    step draws the architecture from ``arch_normal_master`` / ``arch_reduce_master``, which here return it."""
    normal, reduce = to_arch(genotype.normal, ops), to_arch(genotype.reduce, ops)
    net.arch_normal_master.forward = lambda: normal
    net.arch_reduce_master.forward = lambda: reduce
    net._model_optimizer = optimizer
    _, loss = net.step(x, y)
    return loss.detach()


def path_numel(net: nn.Module) -> int:
    """Parameters (elements) the last step gave gradients to: their step clears every gradient first."""
    return sum(p.numel() for p in net.model_parameters() if p.grad is not None)
