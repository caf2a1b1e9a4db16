"""The weight-sharing supernet: one weight set per (cell layer, edge slot (from, to), op); single-path forward.

Structure (the DARTS CIFAR network, with every op of the vocabulary on every possible edge slot):
stem (conv 3x3 to ``stem_multiplier * C`` channels, BN), ``layers`` cells with reductions at ``layers // 3`` and
``2 * layers // 3`` (channels double), global average pool, linear classifier. A cell's output is the concatenation of
all its intermediate nodes; the nodes a genotype leaves out of its ``concat`` contribute zeros there, so loose-end
cells share the same weights. BN inside cells has no affine parameters and always normalises with the statistics of
the batch it sees (NAT.md section 5: the paper's reward uses batch statistics).

**Batched single-path forward.** :meth:`Supernet.forward_many` runs ``A`` genotypes on the same images in one pass:
for each node it groups the architectures by the ``(source node, op)`` of their incoming edges, runs each group's op
once on the stacked inputs, and scatters the results back. Every BN normalises each architecture's samples
separately (``[A * B, C, H, W]`` is viewed as ``A`` groups of ``B``), so a batched pass returns the same logits as ``A``
single passes (to float tolerance): that is what makes batching a pure speed-up.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nat_gym.errors import ConfigError, InvalidOpError
from nat_gym.genotype import Genotype
from nat_gym.op_modules import FactorizedReduce, Pool, ReLUConvBN
from nat_gym.ops import build_op
from nat_gym.supernet.config import SupernetConfig

__all__ = ["SupernetConfig", "Supernet", "GroupBatchNorm2d", "grouped_batch_norm", "ShiftedWindowPool", "CroppedConv2d"]


_VERSIONS = itertools.count(1)  # process-wide: every weight change gets a fresh number


class _BNGroups(threading.local):
    """How many architectures the current batch stacks (read by every :class:`GroupBatchNorm2d`); per thread, so
    several threads may run supernet passes at once."""

    value: int = 1


_GROUPS = _BNGroups()


@contextmanager
def _bn_groups(n: int):
    previous, _GROUPS.value = _GROUPS.value, n
    try:
        yield
    finally:
        _GROUPS.value = previous


def grouped_batch_norm(x: torch.Tensor, groups: int, eps: float = 1e-5) -> torch.Tensor:
    """Non-affine batch-statistics BN of each of ``groups`` equal slices of the batch, in one pass for all of them.

    On the ``[groups, B * H * W, C]`` view of a channels-last tensor, the per-channel sums of ``x`` and ``x ** 2``
    give mean and (biased) variance, and one fused multiply-add normalises: measured on CPU at the supernet's sizes
    (8 groups of 360 images), 1.5-2.3x faster than ``groups`` native batch-norm calls and a ``cat``. Equal to
    ``F.batch_norm`` per slice to float tolerance: 1e-5 for inputs of mean about their standard deviation (a
    supernet's), growing with ``(mean / std) ** 2`` (the variance is a difference of two sums).

    Shapes:
        - x: ``[groups * B, C, H, W]``
        - output: same as input (channels-last)
    """
    n, c, h, w = x.shape
    xs = x.permute(0, 2, 3, 1).reshape(groups, -1, c)
    m = xs.shape[1]
    mean = xs.sum(1, keepdim=True) / m
    var = ((xs * xs).sum(1, keepdim=True) / m - mean * mean).clamp_min_(0.0)
    scale = torch.rsqrt(var + eps)
    return torch.addcmul(-mean * scale, xs, scale).view(n, h, w, c).permute(0, 3, 1, 2)


class GroupBatchNorm2d(nn.Module):
    """Non-affine BN with batch statistics, computed separately for each of the ``groups`` architectures stacked
    along the batch dimension (the current group count comes from the supernet's forward).

    Shapes:
        - input: ``[groups * B, C, H, W]``
        - output: same as input
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = _GROUPS.value
        if g == 1:
            return F.batch_norm(x, None, None, training=True, eps=self.eps)
        if not torch.is_grad_enabled():
            return grouped_batch_norm(x, g, self.eps)
        chunks = x.split(x.shape[0] // g)  # training a grouped pass: native BN (fused backward) per architecture
        return torch.cat([F.batch_norm(c, None, None, training=True, eps=self.eps) for c in chunks])

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine=False, batch statistics per architecture"


class ShiftedWindowPool(Pool):
    """Max / average pooling computed as a separable reduction of shifted views where that is faster than the
    built-in pools: the same values as :class:`nat_gym.ops.Pool` (padding ``k // 2``, average excluding the padding;
    2x2 windows clipped at the border).

    The reduction runs on the ``[N, H, W, C]`` view of the input (a contiguous view of a channels-last tensor): rows
    first, then columns, each a ``k``-term ``maximum`` / ``add`` of strided slices of the padded input, so every
    elementwise call walks whole contiguous rows of channels. (The same slices taken on the logical ``[N, C, H, W]``
    view run 4-10x slower: the iterator then walks runs of ``C`` floats.)

    Which implementation runs is chosen per call by :meth:`shifted_is_faster`, a rule measured on CPU at the
    supernets' sizes (64 images; ``scripts/bench_supernet.py --configs --pools`` prints the table). Forward passes
    without gradients: the slices win on maps of 8x8 and more at stride 1 (max pools 1.4-4x, average pools 1.7-3x up
    to 32 channels; with 80 channels the built-in average pool wins by 1.1-1.7x) and on 32x32 maps at stride 2
    (1.1-2.3x); the built-in pools win on smaller maps and at stride 2 elsewhere. Passes that need gradients: the
    built-in pools, whose single backward kernel is 5-35x faster than the slices' backward for max pools (an
    ``eq``/``where``/``masked_fill_`` per tap and a zero-filled gradient per slice); for average pools the slices
    win only at stride 1 on 8x8 maps with 8 channels (by 10-30%) and lose by up to 9x elsewhere. On CUDA the
    built-in pools always run.

    Shapes:
        - input: ``[N, C, H, W]``
        - output: ``[N, C, ceil(H / stride), ceil(W / stride)]`` (channels-last)
    """

    def __init__(self, kind: str, kernel: int, stride: int) -> None:
        super().__init__(kind, kernel, stride)
        self.lo = 0 if kernel % 2 == 0 else kernel // 2  # window i covers [i * stride - lo, i * stride - lo + kernel)
        self._inverse_counts: dict[tuple, torch.Tensor] = {}

    def shifted_is_faster(self, x: torch.Tensor) -> bool:
        """Whether the shifted slices beat the built-in pool on ``x`` (see the class docstring for the measurements)."""
        if x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
            return False
        side = min(x.shape[2], x.shape[3])
        few_channels = self.kind == "max_pool" or x.shape[1] <= 32
        return side >= 32 or (self.stride == 1 and side >= 8 and few_channels)

    def _window(self, y: torch.Tensor, fill: float, combine: Callable) -> torch.Tensor:
        """Reduce the windows of ``y`` (``[N, H, W, C]``) along H and W; returns ``[N, ceil(H/s), ceil(W/s), C]``."""
        _, h, w, _ = y.shape
        k, lo, s = self.kernel, self.lo, self.stride
        mh, mw = -(-h // s), -(-w // s)
        span_h, span_w = (mh - 1) * s + 1, (mw - 1) * s + 1  # rows/columns covered by the first tap's slice
        pad_h, pad_w = max(0, span_h + k - 1 - lo - h), max(0, span_w + k - 1 - lo - w)
        p = F.pad(y, (0, 0, lo, pad_w, lo, pad_h), value=fill)
        rows = p[:, 0:span_h:s]
        for i in range(1, k):
            rows = combine(rows, p[:, i : i + span_h : s])
        out = rows[:, :, 0:span_w:s]
        for j in range(1, k):
            out = combine(out, rows[:, :, j : j + span_w : s])
        return out

    def _inverse_count(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``1 / (number of image pixels in each window)``, ``[ceil(H/s), ceil(W/s), 1]``."""
        key = (h, w, like.device, like.dtype)
        if key not in self._inverse_counts:
            ones = torch.ones((1, h, w, 1), device=like.device, dtype=like.dtype)
            self._inverse_counts[key] = self._window(ones, 0.0, torch.add)[0].reciprocal()
        return self._inverse_counts[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifted(x) if self.shifted_is_faster(x) else super().forward(x)

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """The pool computed by the shifted slices (whatever :meth:`shifted_is_faster` says)."""
        y = x.permute(0, 2, 3, 1)
        if self.kind == "max_pool":
            out = self._window(y, float("-inf"), torch.maximum)
        else:
            out = self._window(y, 0.0, torch.add) * self._inverse_count(x.shape[2], x.shape[3], x)
        return out.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel={self.kernel}, stride={self.stride}"


class CroppedConv2d(nn.Conv2d):
    """A ``Conv2d`` with 'same' padding that drops the kernel taps which can only ever see zero padding.

    On the small feature maps of a supernet (2x2 and 4x4 after two reductions) most taps of a 5x5 or dilated kernel
    fall outside the image: a dilated 5x5 conv on a 2x2 map is a 1x1 conv. Cropping the kernel to the taps within
    ``H - 1`` pixels of the centre gives the same output, several times faster on CPU.

    Shapes:
        - input: ``[N, C_in, H, W]``
        - output: ``[N, C_out, ceil(H / stride), ceil(W / stride)]``
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        dh, dw = self.dilation
        rh = min(kh // 2, (x.shape[2] - 1) // dh)
        rw = min(kw // 2, (x.shape[3] - 1) // dw)
        if (rh, rw) == (kh // 2, kw // 2):
            return super().forward(x)
        ch, cw = kh // 2, kw // 2
        weight = self.weight[:, :, ch - rh : ch + rh + 1, cw - rw : cw + rw + 1]
        return F.conv2d(x, weight, self.bias, self.stride, (dh * rh, dw * rw), self.dilation, self.groups)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> CroppedConv2d:
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None)  # fmt: skip
        new.load_state_dict(conv.state_dict())
        return new


def _croppable(conv: nn.Module) -> bool:
    """A conv whose padding is 'same' (``dilation * (k // 2)``) on odd kernels: cropping it is exact."""
    if type(conv) is not nn.Conv2d:
        return False
    k, d, p = conv.kernel_size, conv.dilation, conv.padding
    return max(k) > 1 and all(ki % 2 == 1 and pi == di * (ki // 2) for ki, di, pi in zip(k, d, p))


def _swap_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a :class:`GroupBatchNorm2d`, every pool by a
    :class:`ShiftedWindowPool` and every 'same' conv by a :class:`CroppedConv2d` (in place; returns ``module``)."""
    if isinstance(module, Pool):
        return ShiftedWindowPool(module.kind, module.kernel, module.stride)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, GroupBatchNorm2d(child.num_features, child.eps))
        elif _croppable(child):
            setattr(module, name, CroppedConv2d.from_conv(child))
        elif isinstance(child, Pool):
            setattr(module, name, ShiftedWindowPool(child.kind, child.kernel, child.stride))
        else:
            _swap_bn(child)
    return module


class _ChannelsLastCat(torch.autograd.Function):
    """``torch.cat(tensors, dim=1)`` of channels-last tensors whose backward hands every input a *contiguous*
    channels-last gradient. (Autograd's own backward of ``cat`` hands out channel slices of the output's gradient:
    strided views, on which the CPU kernels of BN and ReLU backward fall back to generic loops, 2-17x slower at the
    supernet's sizes; every node of a cell ends in such a BN.)"""

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [t.shape[1] for t in tensors]
        return torch.cat(tensors, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(g.contiguous(memory_format=torch.channels_last) for g in grad.split(ctx.sizes, dim=1))


def _cached(cache: dict | None, key: tuple, fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)``, memoised in ``cache`` under ``key`` when a cache is given."""
    if cache is None:
        return fn(*args)
    value = cache.get(key)
    if value is None:
        value = cache[key] = fn(*args)
    return value


def _supernet_op(op: str, c: int, stride: int) -> nn.Module:
    """The supernet's copy of an op: non-affine BN with batch statistics, fast pools, and a BN after every pool (as
    in DARTS's search network: without it, randomly sampled paths of pools and skips have unbounded scale)."""
    module = _swap_bn(build_op(op, c, stride, affine=False))
    if isinstance(module, ShiftedWindowPool):
        module = nn.Sequential(module, GroupBatchNorm2d(c))
    return module


def _slot(src: int, dst: int) -> str:
    return f"{src}_{dst}"


class _SuperCell(nn.Module):
    def __init__(self, cfg: SupernetConfig, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction, self.C = reduction, c
        pre0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, False)
        self.preprocess0 = _swap_bn(pre0)
        self.preprocess1 = _swap_bn(ReLUConvBN(c_p, c, 1, 1, 0, affine=False))
        self.edges = nn.ModuleDict()
        for dst in range(2, cfg.steps + 2):
            for src in range(dst):
                stride = 2 if reduction and src < 2 else 1
                self.edges[_slot(src, dst)] = nn.ModuleDict({op: _supernet_op(op, c, stride) for op in cfg.ops})


class Supernet(nn.Module):
    """The weight-sharing supernet (see the module docstring).

    Args:
        config: a :class:`SupernetConfig` (or keyword arguments for one).

    Attributes:
        version: a string that changes whenever the weights change (training steps, loading); evaluators key their
            caches on it.
    """

    def __init__(self, config: SupernetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = config if config is not None else SupernetConfig(**kwargs)
        if config is not None and kwargs:
            raise ConfigError("Supernet: pass either a config or keyword arguments, not both")
        self.config = cfg
        c = cfg.C
        c_stem = cfg.stem_multiplier * c
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c_stem, 3, padding=1, bias=False), GroupBatchNorm2d(c_stem)
        )
        c_pp, c_p, c_cur = c_stem, c_stem, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(cfg.layers):
            reduction = i in cfg.reduction_layers
            if reduction:
                c_cur *= 2
            self.cells.append(_SuperCell(cfg, c_pp, c_p, c_cur, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, cfg.steps * c_cur
        self.classifier = nn.Linear(c_p, cfg.num_classes)
        self.to(memory_format=torch.channels_last)
        self._ops = frozenset(cfg.ops)
        self._param_index: dict[nn.Parameter, int] = {}  # lazily built by path_parameters
        self._module_params: dict[nn.Module, tuple[nn.Parameter, ...]] = {}
        self._version_tag = "init"
        self._version = f"init:{next(_VERSIONS)}"

    # ------------------------------------------------------------------------------------------------- version
    @property
    def version(self) -> str:
        return self._version

    def bump_version(self, tag: str | None = None) -> None:
        """Mark the weights as changed (called after every optimiser step and on load). Versions never repeat in a
        process, so a cache keyed on them can never serve results of other weights."""
        if tag is not None:
            self._version_tag = tag
        self._version = f"{self._version_tag}:{next(_VERSIONS)}"

    # ------------------------------------------------------------------------------------------------- parameters
    def path_parameters(self, *genotypes: Genotype) -> list[nn.Parameter]:
        """The parameters a single-path pass of ``genotype`` can use (stem, every cell's preprocessing, the ops on
        its edges, classifier), in the order of :meth:`parameters`; a training step gives gradients to these only.
        Several genotypes: the union of their paths (a multi-process step, one path per process).

        Walking the whole supernet instead (``parameters()``: thousands of modules) costs several milliseconds of
        Python per step; this reads per-module lists cached on first use.
        """
        if not self._param_index:
            self._param_index = {p: i for i, p in enumerate(self.parameters())}
        used = [self.stem, self.classifier]
        for mod in self.cells:
            used += [mod.preprocess0, mod.preprocess1]
            for genotype in genotypes:
                cell = genotype.reduce if mod.reduction else genotype.normal
                used += [mod.edges[_slot(e.src, e.dst)][e.op] for e in cell.edges]
        params = set()
        for module in used:
            cached = self._module_params.get(module)
            if cached is None:
                cached = self._module_params[module] = tuple(module.parameters())
            params.update(cached)
        return sorted(params, key=self._param_index.__getitem__)

    def _apply(self, fn, recurse: bool = True):  # .to() / .cuda() may create new parameters: forget the lists
        self._param_index, self._module_params = {}, {}
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------------------------------------- checks
    def check_genotype(self, genotype: Genotype) -> None:
        """Raise a clear error if ``genotype`` cannot run on this supernet."""
        if genotype.steps > self.config.steps:
            raise ConfigError(
                f"genotype: {genotype.steps} intermediate nodes, but the supernet has {self.config.steps}; "
                "build the supernet with steps >= the genotype's"
            )
        for cell_name, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            for k, e in enumerate(cell.edges):
                if e.op not in self._ops:
                    raise InvalidOpError(
                        f"{cell_name}.edges[{k}]: op {e.op!r} is not in the supernet's op vocabulary "
                        f"{list(self.config.ops)}"
                    )

    # ------------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        """Single-path forward of one genotype.

        Shapes:
            - x: ``[B, in_channels, H, W]``
            - output: logits ``[B, num_classes]``
        """
        return self.forward_many(x, [genotype])[0]

    def forward_many(
        self, x: torch.Tensor, genotypes: Sequence[Genotype], cache: dict[tuple, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Batched single-path forward of ``A`` genotypes on the same images.

        Values that do not depend on the architecture (the stem, the preprocessing of the stem's output, and every
        op applied to those) are computed once for all ``A`` architectures. With ``cache`` (a dict the caller keeps
        per image batch and weight version, inference only), they are also reused across calls.

        Shapes:
            - x: ``[B, in_channels, H, W]``
            - output: logits ``[A, B, num_classes]``
        """
        a, b = len(genotypes), x.shape[0]
        if a == 0:
            raise ConfigError("genotypes: expected at least one genotype")
        for g in genotypes:
            self.check_genotype(g)
        if cache is not None and torch.is_grad_enabled():
            raise ConfigError("cache: the activation cache is for inference only (use torch.no_grad())")
        stem = _cached(cache, ("stem",), self.stem, x.contiguous(memory_format=torch.channels_last))
        # (tensor, shared): a shared tensor is [B, ...] and the same for every architecture
        s0 = s1 = (stem, True)
        with _bn_groups(a):
            for layer, cell_mod in enumerate(self.cells):
                cells = [g.reduce if cell_mod.reduction else g.normal for g in genotypes]
                s0, s1 = s1, (self._cell_forward(layer, cell_mod, s0, s1, cells, a, b, cache), False)
        feats = F.adaptive_avg_pool2d(s1[0], 1).flatten(1)
        return self.classifier(feats).view(a, b, -1)

    def _cell_forward(self, layer: int, mod: _SuperCell, s0, s1, cells, a: int, b: int, cache) -> torch.Tensor:
        def pre(k: int, value: tuple[torch.Tensor, bool], fn: nn.Module) -> tuple[torch.Tensor, bool]:
            tensor, shared = value
            if not shared:
                return fn(tensor), False
            with _bn_groups(1):
                return _cached(cache, ("pre", layer, k), fn, tensor), True

        nodes = [pre(0, s0, mod.preprocess0), pre(1, s1, mod.preprocess1)]
        device = s1[0].device
        steps = self.config.steps
        for dst in range(2, steps + 2):
            groups: dict[tuple[int, str], list[int]] = defaultdict(list)
            for arch, cell in enumerate(cells):
                if dst < cell.steps + 2:
                    for e in cell.edges[2 * (dst - 2) : 2 * (dst - 2) + 2]:
                        groups[(e.src, e.op)].append(arch)
            out: torch.Tensor | None = None
            owned = False
            for (src, op), archs in groups.items():
                if op == "null":
                    continue
                inp, shared = nodes[src]
                fn = mod.edges[_slot(src, dst)][op]
                full = len(archs) == a and archs == list(range(a))
                idx = None if full else torch.tensor(archs, device=device)
                if shared:  # one computation serves every architecture of the group
                    with _bn_groups(1):
                        y = _cached(cache, ("edge", layer, src, dst, op), fn, inp)
                    y = y.unsqueeze(0).expand(len(archs), *y.shape)
                else:
                    if idx is not None:
                        inp = inp.unflatten(0, (a, b)).index_select(0, idx).flatten(0, 1)
                    with _bn_groups(len(archs)):
                        y = fn(inp).unflatten(0, (len(archs), b))
                # `out` may alias an op's input (skip_connect) until a sum makes it a buffer of our own
                if idx is None:
                    if out is None:
                        out = y
                    elif owned:
                        out.add_(y)
                    else:
                        out, owned = out + y, True
                else:
                    if out is None:
                        out, owned = y.new_zeros((a, *y.shape[1:])), True
                    elif not owned:
                        out, owned = out.clone(memory_format=torch.contiguous_format), True
                    out.index_add_(0, idx, y)
            if out is None:  # every incoming edge is null (or absent) for every architecture
                _, _, h, w = nodes[1][0].shape
                if mod.reduction:
                    h, w = (h + 1) // 2, (w + 1) // 2
                out = nodes[1][0].new_zeros((a, b, mod.C, h, w))
            nodes.append((out.flatten(0, 1).contiguous(memory_format=torch.channels_last), False))
        inter = [n for n, _ in nodes[2:]]
        if any(c.concat != tuple(range(2, steps + 2)) for c in cells):
            # nodes outside an architecture's concat contribute zeros (loose-end cells share the same weights)
            keep = torch.zeros((a, steps), dtype=inter[0].dtype)  # built on the host, copied to the device once
            for arch, cell in enumerate(cells):
                keep[arch, [n - 2 for n in cell.concat]] = 1.0
            keep = keep.to(device)
            inter = [(t.unflatten(0, (a, b)) * keep[:, i].view(a, 1, 1, 1, 1)).flatten(0, 1) for i, t in enumerate(inter)]
        return _ChannelsLastCat.apply(*inter) if torch.is_grad_enabled() else torch.cat(inter, dim=1)

    def extra_repr(self) -> str:
        return f"config={self.config}"
