"""The directional context-aware consistency of CAC (Lai et al., CVPR 2021), as pure math.

Two overlapping crops of one unlabelled image give, at every position of their overlap
(stride 8), two unit feature vectors of the same place seen in different contexts. The
loss pulls the *less* confident of the two towards the *more* confident one (a
stop-gradient on the target), only where the target is confident, and pushes it away
from negatives whose pseudo-label differs from the anchor's own:

- direction 1 (crop-1 anchors ``a``, crop-2 targets ``t``), for position ``i``:
  ``p_i = a_i . sg(t_i) / tau``;
  ``l_i = -log(exp(p_i) / D_i)``, ``D_i = exp(p_i) + sum_j [y_j != yhat1_i] exp(a_i . n_j / tau)``;
  active where ``c2_i > threshold`` and ``c1_i < c2_i``;
  ``L1 = sum_i active_i l_i / (sum_i active_i + 1e-12)``;
- direction 2 mirrors it (crop-2 anchors, filter on ``yhat2``, active where ``c1_i >
  threshold`` and ``c2_i < c1_i``);
- the consistency term is ``L1 + L2`` (a sum, not a mean); 0 when nothing is active.

Numerics follow the reference: a per-row shift ``m_i`` (the maximum of ``p_i`` and of
the first chunk of negative similarities, filtered ones included) for both numerator
and denominator, ``-log(e^(p-m) / (sum + 1e-8) + 1e-8)``, negatives in column chunks
recomputed in backward (``torch.utils.checkpoint``), all in float32 (also under AMP).

Nothing here knows about models, crops or processes: the task pools and projects the
features, cuts the overlaps (:func:`overlap_entries`), gathers negatives across
processes and keeps the :class:`NegativeBank`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from eochange.errors import ConfigError

TEMPERATURE = 0.1
"""tau of the reference (``temp``)."""
THRESHOLD = 0.75
"""Confidence a target must exceed (``pos_thresh_value``)."""
CHUNK = 8000
"""Negatives per column chunk (the reference's)."""
STRIDE = 8
"""Pixels per position of the pooled feature maps (the reference hard-codes it)."""


class DirectionalLoss(NamedTuple):
    """The consistency term and its parts.

    Attributes:
        loss: ``L1 + L2`` (scalar, with gradient into the anchors).
        direction1: ``L1`` (crop-1 anchors).
        direction2: ``L2`` (crop-2 anchors).
        active1: Positions active in direction 1.
        active2: Positions active in direction 2.
    """

    loss: torch.Tensor
    direction1: torch.Tensor
    direction2: torch.Tensor
    active1: int
    active2: int


def directional_contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels1: torch.Tensor,
    labels2: torch.Tensor,
    confidence1: torch.Tensor,
    confidence2: torch.Tensor,
    negatives: torch.Tensor,
    negative_labels: torch.Tensor,
    temperature: float = TEMPERATURE,
    threshold: float = THRESHOLD,
    chunk: int = CHUNK,
) -> DirectionalLoss:
    """CAC's directional contrastive loss over ``n`` aligned overlap positions.

    Args:
        z1: ``(n, D)`` unit features of crop 1 at the overlap positions.
        z2: ``(n, D)`` unit features of crop 2 at the same positions (same order).
        labels1: ``(n,)`` pseudo-labels of crop 1 (argmax of its logits).
        labels2: ``(n,)`` pseudo-labels of crop 2.
        confidence1: ``(n,)`` confidences of crop 1 (max softmax probability).
        confidence2: ``(n,)`` confidences of crop 2.
        negatives: ``(N, D)`` negative pool (no gradient is taken through it).
        negative_labels: ``(N,)`` pseudo-labels of the negatives.
        temperature: tau (0.1).
        threshold: A target counts only where its confidence exceeds this (0.75).
        chunk: Negatives per chunk of the similarity matrix (memory, not the result).

    Returns:
        The loss ``L1 + L2`` and its parts; gradients reach ``z1`` and ``z2`` only as
        anchors.

    Raises:
        ValueError: Shapes that do not match.
    """
    n = len(z1)
    if z2.shape != z1.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2: expected equal (n, D) shapes, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")  # fmt: skip
    for name, value in (("labels1", labels1), ("labels2", labels2),
                        ("confidence1", confidence1), ("confidence2", confidence2)):  # fmt: skip
        if value.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {tuple(value.shape)}")
    if negatives.ndim != 2 or negatives.shape[1] != z1.shape[1]:
        raise ValueError(f"negatives: expected (N, {z1.shape[1]}), got {tuple(negatives.shape)}")
    if negative_labels.shape != (len(negatives),):
        raise ValueError(f"negative_labels: expected shape ({len(negatives)},), got "
                         f"{tuple(negative_labels.shape)}")  # fmt: skip
    if chunk < 1:
        raise ConfigError(f"chunk: expected at least 1 negative per chunk, got {chunk}")
    c1, c2 = confidence1.detach(), confidence2.detach()
    active1 = (c2 > threshold) & (c1 < c2)
    active2 = (c1 > threshold) & (c2 < c1)
    with torch.autocast(z1.device.type, enabled=False):  # float32 also under AMP
        negatives = negatives.detach().float()
        z1, z2 = z1.float(), z2.float()
        args = (negatives, negative_labels, temperature, chunk)
        l1 = one_direction(z1, z2, labels1, active1, *args)
        l2 = one_direction(z2, z1, labels2, active2, *args)
    return DirectionalLoss(l1 + l2, l1, l2, int(active1.sum()), int(active2.sum()))


def one_direction(
    anchors: torch.Tensor,
    targets: torch.Tensor,
    anchor_labels: torch.Tensor,
    active: torch.Tensor,
    negatives: torch.Tensor,
    negative_labels: torch.Tensor,
    temperature: float = TEMPERATURE,
    chunk: int = CHUNK,
) -> torch.Tensor:
    """One direction of :func:`directional_contrastive_loss`: the mean over active rows.

    Args:
        anchors: ``(n, D)`` features that receive the gradient.
        targets: ``(n, D)`` positives (detached here).
        anchor_labels: ``(n,)`` pseudo-labels of the anchors (filter the negatives).
        active: ``(n,)`` bool, the positions that count.
        negatives: ``(N, D)`` negative pool (detached).
        negative_labels: ``(N,)`` their pseudo-labels.
        temperature: tau.
        chunk: Negatives per chunk.

    Returns:
        A scalar: exactly 0 (still connected to ``anchors``) when nothing is active.
    """
    rows = active.nonzero().squeeze(1)
    if len(rows) == 0:
        return anchors.sum() * 0.0  # keeps the graph: every parameter gets a (zero) grad
    # Inactive rows are multiplied by 0 in the reference; leaving them out is the same
    # result (the shift is per row) at a fraction of the cost.
    anchor = anchors[rows]
    positive = (anchor * targets[rows].detach()).sum(1) / temperature
    labels = anchor_labels[rows]
    shift = positive.detach()
    if len(negatives):
        first = anchor.detach() @ negatives[:chunk].T / temperature
        shift = torch.maximum(shift, first.max(dim=1).values)
    total = torch.exp(positive - shift)
    for start in range(0, len(negatives), chunk):
        block = negatives[start : start + chunk]
        block_labels = negative_labels[start : start + chunk]
        if anchor.requires_grad:
            total = total + checkpoint(_negative_sum, anchor, block, labels, block_labels,
                                       shift, temperature, use_reentrant=False)  # fmt: skip
        else:
            total = total + _negative_sum(anchor, block, labels, block_labels, shift, temperature)
    loss = -torch.log(torch.exp(positive - shift) / (total + 1e-8) + 1e-8)
    return loss.sum() / (len(rows) + 1e-12)


def _negative_sum(
    anchor: torch.Tensor,
    negatives: torch.Tensor,
    labels: torch.Tensor,
    negative_labels: torch.Tensor,
    shift: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """``sum_j [y_j != label_i] exp(a_i . n_j / tau - m_i)`` for every anchor row."""
    similarity = anchor @ negatives.T / temperature
    keep = negative_labels[None, :] != labels[:, None]
    return (torch.exp(similarity - shift[:, None]) * keep).sum(1)


def overlap_entries(
    maps: Sequence[torch.Tensor],
    windows: torch.Tensor,
    flips: torch.Tensor,
    stride: int = STRIDE,
) -> list[torch.Tensor]:
    """The overlap positions of one crop's maps, un-flipped, flattened over the batch.

    For every image ``b``: a flipped crop's maps are flipped back along the width, then
    rows ``[top/stride, bottom/stride)`` and columns ``[left/stride, right/stride)`` are
    kept and flattened row-major. Since both crops' windows have the same shape, entry
    ``i`` of crop 1 and entry ``i`` of crop 2 are the same place of the image.

    Args:
        maps: Tensors ``(B, C, h, w)`` (features) or ``(B, h, w)`` (labels, confidences)
            of one crop, on the ``stride`` grid.
        windows: ``(B, 4)`` int overlap windows ``(top, left, bottom, right)`` in the
            crop's own (unflipped) pixels, multiples of ``stride``.
        flips: ``(B,)`` bool, whether the crop was flipped horizontally.
        stride: Pixels per map position.

    Returns:
        One tensor per map: ``(n, C)`` or ``(n,)``, ``n`` the total overlap positions.
    """
    out: list[list[torch.Tensor]] = [[] for _ in maps]
    for b, (top, left, bottom, right) in enumerate(windows.tolist()):
        rows = slice(top // stride, bottom // stride)
        cols = slice(left // stride, right // stride)
        for k, values in enumerate(maps):
            value = values[b].flip(-1) if bool(flips[b]) else values[b]
            cut = value[..., rows, cols]
            out[k].append(cut.flatten(-2).T if cut.ndim == 3 else cut.flatten())
    return [torch.cat(parts) for parts in out]


def pick_negatives(
    features: torch.Tensor,
    labels: torch.Tensor,
    count: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All (or ``count`` random) positions of one crop's maps as negatives, detached.

    Args:
        features: ``(B, D, h, w)`` unit features.
        labels: ``(B, h, w)`` pseudo-labels.
        count: Positions to draw without replacement (the reference's ``selected_num``);
            None: every position.
        generator: Random generator of the draw (default: torch's global one).

    Returns:
        ``(m, D)`` features and ``(m,)`` labels.

    Raises:
        ConfigError: ``count`` exceeds the positions of the batch.
    """
    flat = features.detach().permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    flat_labels = labels.reshape(-1)
    if count is None:
        return flat, flat_labels
    if not 0 < count <= len(flat):
        raise ConfigError(
            f"negatives_per_crop: expected 1..{len(flat)} (batch x positions of a crop), "
            f"got {count}"
        )
    pick = torch.randperm(len(flat), generator=generator, device="cpu")[:count]
    pick = pick.to(flat.device)
    return flat[pick], flat_labels[pick]


class NegativeBank:
    """FIFO of the negatives of the last ``steps`` training steps (no momentum encoder).

    Args:
        steps: Steps kept, the current one included (the reference's ``step_save + 1``).
    """

    def __init__(self, steps: int) -> None:
        if steps < 1:
            raise ConfigError(f"negative bank: expected at least the current step, got {steps}")
        self._features: deque[torch.Tensor] = deque(maxlen=steps)
        self._labels: deque[torch.Tensor] = deque(maxlen=steps)

    def __len__(self) -> int:
        return sum(len(f) for f in self._features)

    def push(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this step's negatives (detached); return the pool, oldest step first."""
        self._features.append(features.detach())
        self._labels.append(labels.detach())
        return torch.cat(list(self._features)), torch.cat(list(self._labels))

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        """The kept steps (CPU tensors), for a checkpoint."""
        return {"features": [f.cpu() for f in self._features],
                "labels": [y.cpu() for y in self._labels]}  # fmt: skip

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        """Restore :meth:`state_dict` (the last ``steps`` of it)."""
        self._features.clear()
        self._labels.clear()
        self._features.extend(state["features"])
        self._labels.extend(state["labels"])
