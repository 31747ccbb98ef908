"""The SCS metric as a ``torchmetrics.Metric``, for use inside Lightning training loops.

States are the three confusion matrices, summed across processes, so validation under
DDP gives the same global numbers as a single process. Per-cube scores need cube ids,
which are not synchronised: use :class:`~eochange.metrics.ChangeSegmentationMetric` for
those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from eochange.metrics.scs import ChangeSegmentationMetric, scores


class ChangeSegmentationTorchMetric(Metric):
    """SCS / BC / SC / mIoU accumulated as torchmetrics states.

    ``update(gt, pred)`` takes one cube's ``(T, H, W)`` series (all months, in order);
    ``compute()`` returns a dict of float tensors ``scs``, ``bc``, ``sc``, ``miou`` and
    ``iou`` (per class).
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

    def update(self, gt: Any, pred: Any) -> None:
        """Add one cube's ground-truth and predicted series ``(T, H, W)``."""
        self._cube.reset()
        self._cube.update(gt, pred, "cube")
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
        return {
            key: torch.tensor(np.asarray(value, dtype=np.float64)) for key, value in result.items()
        }
