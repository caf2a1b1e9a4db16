"""Batch augmentation of the DARTS protocol on normalised image tensors: random crop, horizontal flip, cutout.

DARTS (``utils._data_transforms_cifar10``) applies, per image: ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, normalisation, then ``Cutout(16)`` (DeVries & Taylor 2017: one square of zeros, centred
anywhere, clipped at the border). Here the same is done on a whole normalised batch at once, on whatever device it
lives: the crop pads with zeros in normalised space (the mean pixel, where DARTS pads black), and cutout zeroes the
square after normalisation, as DARTS does. All randomness is drawn on the CPU from ``generator`` and moved to the
batch's device, so a seed gives the same augmentation on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment_batch"]


def augment_batch(x: torch.Tensor, *, crop_padding: int = 0, hflip: bool = False, cutout: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """Augment a batch; returns a new tensor (``x`` is not modified).

    Args:
        x: float ``[N, C, H, W]`` normalised images.
        crop_padding: pad each side by this many zero pixels and crop a random ``H x W`` window (0 = no crop).
        hflip: mirror each image left-right with probability 1/2.
        cutout: side of the square set to 0 in each image, centred uniformly in the image (0 = none).
        generator: a CPU ``torch.Generator`` (the draws are made in the order crop, flip, cutout).

    Shapes: ``x`` and the output ``[N, C, H, W]``.
    """
    n, _, h, w = x.shape
    dev = x.device
    if crop_padding > 0:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # [N, 1, H, 1]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # [N, 1, 1, W]
        idx = torch.arange(n, device=dev)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[idx, chans, rows, cols]
    if hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cutout > 0:
        cy = torch.randint(0, h, (n,), generator=generator).to(dev)
        cx = torch.randint(0, w, (n,), generator=generator).to(dev)
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        half = cutout // 2
        in_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] - half + cutout))  # [N, H]
        in_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] - half + cutout))  # [N, W]
        hole = (in_y[:, :, None] & in_x[:, None, :])[:, None]  # [N, 1, H, W]
        x = x.masked_fill(hole, 0.0)
    return x
