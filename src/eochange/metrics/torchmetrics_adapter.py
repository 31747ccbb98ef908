"""The SCS metric as a ``torchmetrics.Metric``, for use inside Lightning training loops.

States are the three confusion matrices, summed across processes, so validation under
DDP gives the same global numbers as a single process (each cube must be seen whole by
one process). Per-cube scores are kept in ``per_cube`` for the cubes this process saw;
they are not synchronised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from eochange.metrics.scs import ChangeSegmentationMetric, scores


class ChangeSegmentationTorchMetric(Metric):
    """SCS / BC / SC / mIoU accumulated as torchmetrics states.

    ``update(gt, pred, cube_id)`` takes one cube's ``(T, H, W)`` series (all months, in
    order); ``compute()`` returns a dict of float tensors ``scs``, ``bc``, ``sc``,
    ``miou`` and ``iou`` (per class), and the accumulated int64 counts ``confusion``
    (K x K, rows ground truth, ignore left out) and ``change_confusion`` (2 x 2).
    """

    full_state_update = False

    def __init__(self, num_classes: int = 6, ignore_index: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self._cube = ChangeSegmentationMetric(num_classes, ignore_index)
        k1 = num_classes + 1
        self.add_state("change", torch.zeros(2, 2, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("changed", torch.zeros(k1, k1, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("classes", torch.zeros(k1, k1, dtype=torch.int64), dist_reduce_fx="sum")
        self.per_cube: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Zero the states and forget the per-cube scores."""
        super().reset()
        self.per_cube = {}

    def forward(self, gt: Any, pred: Any, cube_id: str | None = None) -> dict[str, Any]:
        """Add one cube (as :meth:`update`) and return its scores.

        torchmetrics' generic ``forward`` resets and restores the states around the
        update, which would drop the per-cube scores; one cube is one update here.
        """
        self.update(gt, pred, cube_id)
        return self.per_cube[list(self.per_cube)[-1]]

    def update(self, gt: Any, pred: Any, cube_id: str | None = None) -> None:
        """Add one cube's ground-truth and predicted series ``(T, H, W)``.

        Raises:
            ValueError: As :meth:`ChangeSegmentationMetric.update`, and when the cube
                was already added.
        """
        name = cube_id if cube_id is not None else f"cube{len(self.per_cube)}"
        if name in self.per_cube:
            raise ValueError(f"cube {name!r} was already added; pass all its months at once")
        self._cube.reset()
        self.per_cube[name] = self._cube.update(gt, pred, name)
        self.change += torch.from_numpy(self._cube.change).to(self.change.device)
        self.changed += torch.from_numpy(self._cube.changed_classes).to(self.changed.device)
        self.classes += torch.from_numpy(self._cube.classes).to(self.classes.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """Global scores (NaN SC/SCS when no ground truth changed)."""
        result = scores(
            self.change.cpu().numpy(),
            self.changed.cpu().numpy(),
            self.classes.cpu().numpy(),
            self.num_classes,
        )
        out = {
            key: torch.tensor(np.asarray(value, dtype=np.float64)) for key, value in result.items()
        }
        k = self.num_classes
        out["confusion"] = self.classes[:k, :k].detach().cpu().clone()
        out["change_confusion"] = self.change.detach().cpu().clone()
        return out
