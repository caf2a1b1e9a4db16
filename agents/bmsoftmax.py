r"""Binary-masked softmax (BMSoftmax) and a masked categorical distribution.

NAT (Guo et al., "NAT: Neural Architecture Transformer for Accurate and Compact Architectures", NeurIPS 2019)
restricts, for every edge of a cell, the operations the policy may choose to the valid transition targets of the
edge's current operation. With logits :math:`z` over the :math:`K` candidate operations of one edge and a 0/1 mask
:math:`v` of valid targets, the *binary-masked softmax* is

.. math::
    p_k = \frac{v_k \exp(z_k)}{\sum_{j} v_j \exp(z_j)}.

Masked entries get probability exactly ``0`` and receive no gradient. The implementation replaces masked logits by
``-inf`` with :func:`torch.where` (whose backward sends exactly ``0`` to the unselected branch) and then applies the
max-shifted, numerically stable :func:`torch.softmax`, so logits of any magnitude (``±1e4`` and beyond, mixed signs)
give finite probabilities, and masked logits may even hold ``nan`` or ``inf`` without affecting anything.

Infinite *valid* logits are handled exactly, as the limit of a logit growing without bound: the ``+inf`` entries of
a row share its mass equally (two of them: ``0.5`` each; every other entry ``0``), and a ``-inf`` entry gets
probability ``0`` (log-probability ``-inf``, no ``nan`` in the entropy or in any gradient). A ``nan`` valid logit has
no meaning: it raises :class:`~nat_gym.errors.MaskError` naming the row, as does a row whose valid logits are all
``-inf`` (no entry left to take the mass).

A row (a slice along the softmax dimension) with no valid entry has no distribution; it raises
:class:`~nat_gym.errors.MaskError` naming how many rows are empty and the index of the first one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nat_gym.errors import ConfigError, MaskError

__all__ = ["bmsoftmax", "masked_log_softmax", "BMSoftmax", "MaskedCategorical"]


def _as_bool_mask(mask: Tensor) -> Tensor:
    """Return ``mask`` as a bool tensor (``mask != 0`` for integer or floating masks)."""
    if not isinstance(mask, Tensor):
        raise MaskError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    return mask if mask.dtype == torch.bool else mask != 0


def _check_logits(logits: Tensor, where: str) -> None:
    if not isinstance(logits, Tensor):
        raise ConfigError(f"{where}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ConfigError(f"{where}: logits must have a floating dtype, got {logits.dtype}")
    if logits.dim() == 0:
        raise ConfigError(
            f"{where}: logits must have at least one dimension (the K candidates), got a scalar"
        )


def _prepare(logits: Tensor, mask: Tensor, dim: int, where: str) -> tuple[Tensor, int]:
    """Validate ``logits``/``mask`` and return the bool mask and the normalised (non-negative) ``dim``."""
    _check_logits(logits, where)
    mask = _as_bool_mask(mask)
    if mask.shape != logits.shape:
        raise MaskError(
            f"{where}: mask shape {list(mask.shape)} does not match logits shape {list(logits.shape)}; "
            "they must be equal"
        )
    ndim = logits.dim()
    if not -ndim <= dim < ndim:
        raise ConfigError(f"{where}: dim={dim} is out of range for logits with {ndim} dimension(s)")
    dim = dim % ndim
    empty = ~mask.any(dim=dim)
    n_empty = int(empty.sum())
    if n_empty:
        first = tuple(int(i) for i in empty.nonzero()[0].tolist())
        where_first = ("" if empty.dim() == 0 else f": row index {first}" if n_empty == 1
                       else f"; the first is row index {first}")  # fmt: skip
        raise MaskError(
            f"{where}: {_of_rows(n_empty, empty.numel())} of the mask (shape {list(mask.shape)}, dim={dim}) "
            f"{_verb(n_empty, 'has', 'have')} no valid entry{where_first}. Every row needs at least one valid entry"
        )
    return mask, dim


def _of_rows(n: int, total: int) -> str:
    """``"1 of 1 row"``, ``"2 of 3 rows"``."""
    return f"{n} of {total} {'row' if total == 1 else 'rows'}"


def _verb(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _first_row(rows: Tensor) -> str:
    """``"the only row"`` or ``"the first at row index (i, ...)"`` for a bool tensor of flagged rows."""
    if rows.dim() == 0:
        return "the only row"
    return f"the first at row index {tuple(int(i) for i in rows.nonzero()[0].tolist())}"


def _fill_masked(logits: Tensor, mask: Tensor, dim: int, where: str) -> Tensor:
    """The logits that the softmax sees: ``-inf`` at masked entries; in a row with ``+inf`` valid logits, ``0`` at
    those and ``-inf`` elsewhere (they share the mass). Raises :class:`MaskError` for a ``nan`` valid logit or a
    row whose valid logits are all ``-inf``."""
    neg_inf = torch.full((), -math.inf, dtype=logits.dtype, device=logits.device)
    # torch.where sends exactly zero gradient to the branch it does not select, so masked logits get none.
    filled = torch.where(mask, logits, neg_inf)
    if bool((torch.isfinite(logits) | ~mask).all()):
        return filled  # the usual case: every valid logit is a finite number
    nan_rows = (mask & torch.isnan(logits)).any(dim=dim)
    n_nan = int(nan_rows.sum())
    if n_nan:
        raise MaskError(
            f"{where}: {_of_rows(n_nan, nan_rows.numel())} {_verb(n_nan, 'holds', 'hold')} nan at a valid entry of "
            f"the logits ({_first_row(nan_rows)}); valid logits must be numbers (or +-inf)"
        )
    pos_inf = mask & (logits == math.inf)
    shared = torch.where(pos_inf, torch.zeros((), dtype=logits.dtype, device=logits.device), neg_inf)
    filled = torch.where(pos_inf.any(dim=dim, keepdim=True), shared, filled)  # rows with +inf: those share the mass
    dead_rows = ~(filled > -math.inf).any(dim=dim)
    n_dead = int(dead_rows.sum())
    if n_dead:
        raise MaskError(
            f"{where}: {_of_rows(n_dead, dead_rows.numel())} {_verb(n_dead, 'has', 'have')} -inf at every valid "
            f"entry of the logits ({_first_row(dead_rows)}); a row needs a valid logit above -inf"
        )
    return filled


def bmsoftmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    r"""Binary-masked softmax :math:`p_k = v_k \exp(z_k) / \sum_j v_j \exp(z_j)` (NAT, NeurIPS 2019).

    Masked entries get probability exactly ``0`` and no gradient (their logits may hold any value, ``nan`` and
    ``inf`` included); valid entries along :obj:`dim` sum to ``1``. Stable for logits of any magnitude; ``+inf``
    valid logits share their row's mass equally and ``-inf`` ones get ``0`` (see the module docstring).

    Args:
        logits (torch.Tensor): Unnormalised scores :math:`z` (floating dtype).
        mask (torch.Tensor): Valid entries :math:`v`, same shape as :obj:`logits`; a bool tensor, or a 0/1
            integer/floating tensor (converted with ``mask != 0``).
        dim (int, optional): The dimension of the :math:`K` candidates. (default: :obj:`-1`)

    Returns:
        torch.Tensor: The probabilities, same shape and dtype as :obj:`logits`.

    Raises:
        MaskError: If the shapes differ, a row along :obj:`dim` has no valid entry (the message names how many
            rows are empty and the index of the first), a valid logit is ``nan``, or every valid logit of a row is
            ``-inf`` (the message names the first such row).

    Shapes:
        - **input:** logits :math:`[*, K]`, mask :math:`[*, K]`
        - **output:** probabilities :math:`[*, K]`
    """
    mask, dim = _prepare(logits, mask, dim, "bmsoftmax")
    return torch.softmax(_fill_masked(logits, mask, dim, "bmsoftmax"), dim=dim)


def masked_log_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    r"""Logarithm of :func:`bmsoftmax`: :math:`\log p_k`, with ``-inf`` at masked entries.

    Computed directly (``log_softmax`` of the masked logits), so it is accurate where :math:`p_k` underflows.
    Masked entries receive no gradient. Beware that ``0 * -inf`` is ``nan``: to weight these log-probabilities
    by probabilities (e.g. for an entropy), replace the masked entries by ``0`` first, as
    :meth:`MaskedCategorical.entropy` does.

    Args:
        logits (torch.Tensor): Unnormalised scores (floating dtype).
        mask (torch.Tensor): Valid entries, same shape as :obj:`logits` (bool, or 0/1 integer/floating).
        dim (int, optional): The dimension of the :math:`K` candidates. (default: :obj:`-1`)

    Returns:
        torch.Tensor: The log-probabilities, same shape and dtype as :obj:`logits`.

    Raises:
        MaskError: If the shapes differ, a row along :obj:`dim` has no valid entry, a valid logit is ``nan``, or
            every valid logit of a row is ``-inf``.

    Shapes:
        - **input:** logits :math:`[*, K]`, mask :math:`[*, K]`
        - **output:** log-probabilities :math:`[*, K]`
    """
    mask, dim = _prepare(logits, mask, dim, "masked_log_softmax")
    return torch.log_softmax(_fill_masked(logits, mask, dim, "masked_log_softmax"), dim=dim)


class BMSoftmax(nn.Module):
    r"""Module form of :func:`bmsoftmax`, the binary-masked softmax of NAT (NeurIPS 2019).

    .. math::
        p_k = \frac{v_k \exp(z_k)}{\sum_{j} v_j \exp(z_j)}

    Args:
        dim (int, optional): The dimension of the :math:`K` candidates. (default: :obj:`-1`)

    Shapes:
        - **input:** logits :math:`[*, K]`, mask :math:`[*, K]`
        - **output:** probabilities :math:`[*, K]`
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Return :func:`bmsoftmax` of ``logits`` under ``mask`` along :attr:`dim`."""
        return bmsoftmax(logits, mask, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class MaskedCategorical:
    r"""Categorical distribution over the last dimension restricted to the valid entries of a mask.

    The probabilities are :func:`bmsoftmax` of the logits: masked entries have probability exactly ``0``, are never
    sampled nor returned by :meth:`mode`, have log-probability ``-inf``, and add nothing to the entropy (which is
    computed over valid entries only, without ``0 * log 0 = nan``). No gradient, and never a ``nan`` gradient,
    reaches the masked logits. Probabilities are finite for any valid logits but ``nan``: two ``+inf`` valid logits
    get ``0.5`` each (and are the only ones sampled), a ``-inf`` valid logit gets ``0``.

    Args:
        logits (torch.Tensor): Unnormalised scores (floating dtype).
        mask (torch.Tensor): Valid entries, same shape as :obj:`logits` (bool, or 0/1 integer/floating).

    Raises:
        MaskError: If the shapes of :obj:`mask` and :obj:`logits` differ, a row has no valid entry, a valid
            logit is ``nan`` or every valid logit of a row is ``-inf`` (the message names the first such row).

    Shapes:
        - **input:** logits :math:`[*, K]`, mask :math:`[*, K]`
        - **output:** :meth:`sample`, :meth:`mode`, :meth:`log_prob` and :meth:`entropy` have the batch shape
          :math:`[*]` (:meth:`sample` prefixed by its ``sample_shape``); :attr:`probs` is :math:`[*, K]`
    """

    def __init__(self, logits: Tensor, mask: Tensor) -> None:
        mask, _ = _prepare(logits, mask, -1, "MaskedCategorical")
        self.mask: Tensor = mask
        self.logits: Tensor = logits
        masked = _fill_masked(logits, mask, -1, "MaskedCategorical")
        self._log_probs: Tensor = torch.log_softmax(masked, dim=-1)
        self._probs: Tensor = torch.softmax(masked, dim=-1)

    @property
    def batch_shape(self) -> torch.Size:
        """The batch shape, ``logits.shape[:-1]``."""
        return self.logits.shape[:-1]

    @property
    def num_events(self) -> int:
        """The number :math:`K` of categories (valid or not)."""
        return self.logits.shape[-1]

    @property
    def probs(self) -> Tensor:
        """Probabilities :math:`[*, K]` (:func:`bmsoftmax` of the logits; exactly ``0`` at masked entries)."""
        return self._probs

    @property
    def log_probs(self) -> Tensor:
        """Log-probabilities :math:`[*, K]` (``-inf`` at masked entries)."""
        return self._log_probs

    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw category indices (``int64``), never a masked one; no gradient.

        Args:
            sample_shape (tuple of int, optional): Leading shape of independent draws. (default: :obj:`()`)
                A :class:`torch.Generator` passed positionally here is taken as :obj:`generator`.
            generator (torch.Generator, optional): Source of randomness, on the device of the logits; with a
                seeded generator the draws are reproducible. (default: :obj:`None`, the global generator)

        Returns:
            torch.Tensor: Indices of shape ``sample_shape + batch_shape``.
        """
        if isinstance(sample_shape, torch.Generator):
            if generator is not None:
                raise ConfigError("MaskedCategorical.sample: got two generators")
            sample_shape, generator = (), sample_shape
        sample_shape = torch.Size(sample_shape)
        n = sample_shape.numel()
        out_shape = sample_shape + self.batch_shape
        with torch.no_grad():
            probs_2d = self._probs.detach().reshape(-1, self.num_events)
            if n == 0 or probs_2d.shape[0] == 0:
                return torch.zeros(out_shape, dtype=torch.long, device=self.logits.device)
            # multinomial never draws an entry of probability exactly 0.
            draws = torch.multinomial(probs_2d, n, replacement=True, generator=generator)  # [rows, n]
            return draws.T.reshape(out_shape)

    def mode(self) -> Tensor:
        """Most likely valid category (argmax of the logits over valid entries; first one on ties).

        Returns:
            torch.Tensor: ``int64`` indices of shape ``batch_shape``.
        """
        return self._log_probs.argmax(dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        """Log-probability of ``actions`` (``-inf`` for a masked action).

        Args:
            actions (torch.Tensor): Integer category indices in ``[0, K)``, of a shape that broadcasts with
                ``batch_shape`` (e.g. ``sample_shape + batch_shape``).

        Returns:
            torch.Tensor: Log-probabilities, of the broadcast shape.

        Raises:
            ConfigError: If an action is not an integer in ``[0, K)``.
        """
        actions = torch.as_tensor(actions, device=self.logits.device)
        if actions.is_floating_point() or actions.is_complex():
            if not bool((actions == actions.round()).all()):
                raise ConfigError(
                    f"MaskedCategorical.log_prob: actions must be integers, got {actions.dtype}"
                )
        actions = actions.long()
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_events):
            raise ConfigError(
                f"MaskedCategorical.log_prob: actions must lie in [0, {self.num_events}), got values in "
                f"[{int(actions.min())}, {int(actions.max())}]"
            )
        index = actions.unsqueeze(-1)
        index, log_probs = torch.broadcast_tensors(index, self._log_probs)
        return log_probs.gather(-1, index[..., :1]).squeeze(-1)

    def entropy(self) -> Tensor:
        r"""Entropy :math:`-\sum_{k: v_k = 1} p_k \log p_k` over valid entries (``0`` for a single valid entry).

        Returns:
            torch.Tensor: Entropies of shape ``batch_shape``, with finite gradients.
        """
        # Zero the -inf log-probs (masked entries, -inf logits, entries beside +inf ones) *before* multiplying, so
        # neither the value (0 * -inf) nor the gradient is nan.
        log_probs = self._log_probs
        safe_log_probs = torch.where(log_probs > -math.inf, log_probs, torch.zeros_like(log_probs))
        return -(self._probs * safe_log_probs).sum(dim=-1)

    def __repr__(self) -> str:
        return f"MaskedCategorical(batch_shape={list(self.batch_shape)}, num_events={self.num_events})"
