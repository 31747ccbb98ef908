"""SEN12MS scene-classification and DFC2020 segmentation metrics as ``torchmetrics`` metrics.

For validation inside Lightning loops. Both follow torchmetrics' ``update(preds, target)``
argument order (the numpy :class:`~eochange.metrics.SegmentationConfusionMatrix` keeps
the baseline's ``update(gt, pred)``).

- :class:`SegmentationTorchMetric` accumulates the K x K confusion on the device (one
  ``torch.bincount`` per batch), summed across processes.
- :class:`SceneClassificationTorchMetric` keeps every score and target (concatenated
  across processes) and computes :func:`~eochange.metrics.scene_metrics` at the end.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from eochange.metrics.classification import _label_type, prediction_from_scores, scene_metrics
from eochange.metrics.segmentation import average_accuracy, class_iou


class SegmentationTorchMetric(Metric):
    """DFC2020 AA / mIoU / per-class IoU accumulated as a torchmetrics state.

    Pixels whose target is ``ignore_index`` are left out. Other target or predicted
    values outside ``0..K-1`` are counted in an extra row / column instead of being
    checked on the host at every batch; :meth:`compute` raises if any were seen.

    Args:
        num_classes: K.
        ignore_index: Target value left out (255).
        denominator: AA denominator, ``"present"`` (DFC2020, default) or ``"all"``.
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        denominator: str = "present",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if denominator not in ("present", "all"):
            raise ValueError(f"denominator must be 'present' or 'all', got {denominator!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.denominator = denominator
        k1 = num_classes + 1
        self.add_state("confusion", torch.zeros(k1, k1, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            preds: Predicted classes with ``target``'s shape, or scores / logits
                ``(B, K, ...)`` whose argmax over dim 1 is taken.
            target: Classes ``0..K-1`` or ``ignore_index``, any shape.
        """
        if preds.is_floating_point() and preds.dim() == target.dim() + 1:
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)}")
        k = self.num_classes
        target, preds = target.reshape(-1).long(), preds.reshape(-1).to(target.device).long()
        if self.ignore_index is not None:
            valid = target != self.ignore_index
            target, preds = target[valid], preds[valid]
        t = torch.where((target >= 0) & (target < k), target, k)
        p = torch.where((preds >= 0) & (preds < k), preds, k)
        counts = torch.bincount(t * (k + 1) + p, minlength=(k + 1) ** 2)
        self.confusion += counts.reshape(k + 1, k + 1).to(self.confusion.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``aa``, ``miou`` (float64 scalars), ``iou`` (K,) and the counts ``confusion``.

        Raises:
            ValueError: If a target or prediction outside ``0..K-1`` was seen.
        """
        k = self.num_classes
        counts = self.confusion.detach().cpu()
        if counts[k].sum() or counts[:, k].sum():
            raise ValueError(
                f"{int(counts[k].sum())} target and {int(counts[:, k].sum())} predicted "
                f"values outside 0..{k - 1} (and not ignore_index) were seen"
            )
        cm = counts[:k, :k].numpy()
        iou = class_iou(cm)
        return {
            "aa": torch.tensor(average_accuracy(cm, self.denominator), dtype=torch.float64),
            "miou": torch.tensor(iou.mean(), dtype=torch.float64),
            "iou": torch.from_numpy(iou),
            "confusion": counts[:k, :k].clone(),
        }


class SceneClassificationTorchMetric(Metric):
    """The SEN12MS toolbox's scene-classification scores over a whole evaluation set.

    Scores and targets of every batch are kept (``dist_reduce_fx="cat"``) because most
    scores (samples averages, ranking metrics, the report) are not sums of per-batch
    parts; :meth:`compute` turns the scores into the toolbox's predictions
    (:func:`~eochange.metrics.prediction_from_scores`) and returns
    :func:`~eochange.metrics.scene_metrics` (a dict of floats, numpy arrays and the
    report; log the scalars you need).

    Args:
        label_type: ``"multi"`` or ``"single"``.
        from_logits: Whether ``update`` gets logits (sigmoid for multi-label, softmax for
            single-label are applied, as the toolbox does) instead of probabilities.
        threshold: Multi-label decision threshold (inclusive).
        empty_rows: ``"nan"`` or ``"skip"``, as :func:`~eochange.metrics.scene_metrics`.
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    full_state_update = False

    def __init__(
        self,
        label_type: str = "multi",
        from_logits: bool = False,
        threshold: float = 0.5,
        empty_rows: str = "nan",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.label_type = _label_type(label_type)
        if empty_rows not in ("nan", "skip"):
            raise ValueError(f"empty_rows must be 'nan' or 'skip', got {empty_rows!r}")
        self.from_logits = from_logits
        self.threshold = threshold
        self.empty_rows = empty_rows
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("targets", [], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            preds: Probabilities (or logits with ``from_logits``) ``(N, C)``.
            target: 0/1 indicator ``(N, C)``; single-label also class indices ``(N,)``.
        """
        if preds.dim() != 2:
            raise ValueError(f"preds must be (N, C), got {tuple(preds.shape)}")
        scores = preds.detach()
        if not scores.is_floating_point():
            scores = scores.float()
        if self.from_logits:
            scores = scores.softmax(dim=1) if self.label_type == "single" else scores.sigmoid()
        target = target.detach()
        if target.dim() == 1 and self.label_type == "single":
            target = torch.nn.functional.one_hot(target.long(), scores.shape[1])
        if target.shape != scores.shape:
            raise ValueError(f"target {tuple(target.shape)} and preds {tuple(scores.shape)}")
        self.scores.append(scores)
        # float32 keeps 0/1 exact and lets scene_metrics reject soft labels
        self.targets.append(target.to(torch.float32))

    def compute(self) -> dict[str, Any]:
        """:func:`~eochange.metrics.scene_metrics` of everything added."""
        if isinstance(self.scores, list) and not self.scores:
            raise ValueError("no samples were added")
        scores = dim_zero_cat(self.scores).cpu().numpy()
        targets = dim_zero_cat(self.targets).cpu().numpy()
        pred = prediction_from_scores(scores, self.label_type, self.threshold)
        return scene_metrics(targets, pred, scores, self.label_type, self.empty_rows)
