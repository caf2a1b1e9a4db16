"""Torch modules of the operations (built by :func:`nat_gym.ops.build_op`; definitions in its docstring)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReLUConvBN", "FacConv", "DilConv", "SepConv", "Pool", "Identity", "Zero", "FactorizedReduce"]




class ReLUConvBN(nn.Sequential):
    """ReLU, conv (bias-free), BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class FacConv(nn.Sequential):
    """ReLU, 1 x k and k x 1 convs (in the order given), BN."""

    def __init__(self, c: int, kernel: int, stride: int, first_axis: str, affine: bool = True) -> None:
        pad = kernel // 2
        w = nn.Conv2d(c, c, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False)
        h = nn.Conv2d(c, c, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False)
        convs = (w, h) if first_axis == "w" else (h, w)
        super().__init__(nn.ReLU(inplace=False), *convs, nn.BatchNorm2d(c, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, depthwise conv (dilation d), pointwise conv, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )  # fmt: skip


class SepConv(nn.Sequential):
    """Two (ReLU, depthwise k x k, pointwise 1 x 1, BN) blocks; the stride is on the first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool = True) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, 1, affine=affine),
            DilConv(c_in, c_out, kernel, 1, 1, affine=affine),
        )


class Pool(nn.Module):
    """Max or average pooling with 'same' padding; average pooling excludes the padding."""

    def __init__(self, kind: str, kernel: int, stride: int) -> None:
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride
        # even kernels cannot pad symmetrically: pad right/bottom by replication (only needed at stride 1)
        self.extra_pad = kernel % 2 == 0 and stride == 1
        pad = 0 if kernel % 2 == 0 else kernel // 2
        ceil = kernel % 2 == 0 and stride == 2  # ceil(H / 2) rows, like every other stride-2 op
        if kind == "max_pool":
            self.pool: nn.Module = nn.MaxPool2d(kernel, stride=stride, padding=pad, ceil_mode=ceil)
        else:
            self.pool = nn.AvgPool2d(kernel, stride=stride, padding=pad, count_include_pad=False, ceil_mode=ceil)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad:
            x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return self.pool(x)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``null`` op: zeros of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1 x 1 stride-2 convs on shifted inputs, concatenated, then BN.

    Odd channel counts are supported (the second conv takes the remainder); odd spatial sizes are padded so both
    halves have ``ceil(H / 2)`` rows.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # a stride-2 conv of the input shifted by one pixel; odd sizes need a zero row/column to keep ceil(H / 2)
        h, w = x.shape[2:]
        shifted = (F.pad(x, (0, 1, 0, 1)) if h % 2 or w % 2 else x)[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))
