"""SEN12MS scene-classification metrics with the SEN12MS toolbox's semantics.

The toolbox (``schmitt-muc/SEN12MS``, ``classification/metrics.py`` and ``test.py``)
passes 0/1 indicator matrices ``(N, C)`` for **both** label types to scikit-learn, so
even single-label problems are scored as *multilabel-indicator* problems; ranking
metrics get the probability matrix. :func:`scene_metrics` computes every score that the
toolbox's test script stores, under the same names, with the same scikit-learn calls.
Where the toolbox crashes or returns garbage, documented finite values or NaN are
returned instead (see :func:`scene_metrics`).

Predictions come from :func:`prediction_from_scores`: multi-label ``score >= 0.5``
(rows may be empty), single-label one-hot argmax (first maximum on ties).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    coverage_error,
    hamming_loss,
    label_ranking_average_precision_score,
    label_ranking_loss,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)

LabelType = Literal["single", "multi"]
EmptyRows = Literal["nan", "skip"]

_LABEL_TYPES = {
    "single": "single",
    "single_label": "single",
    "multi": "multi",
    "multi_label": "multi",
}

SCENE_METRIC_NAMES: tuple[str, ...] = (
    "macroPrec",
    "microPrec",
    "samplePrec",
    "macroRec",
    "microRec",
    "sampleRec",
    "macroF1",
    "microF1",
    "sampleF1",
    "macroF2",
    "microF2",
    "sampleF2",
    "HammingLoss",
    "subsetAcc",
    "macroAcc",
    "microAcc",
    "sampleAcc",
    "oneError",
    "coverageError",
    "rankLoss",
    "labelAvgPrec",
    "AverageAcc",
    "OverallAcc",
)
"""The scalar scores of :func:`scene_metrics`, named as in the toolbox's ``test_scores.pkl``."""


def _label_type(label_type: str) -> str:
    try:
        return _LABEL_TYPES[label_type]
    except KeyError:
        raise ValueError(
            f"label_type must be 'single' or 'multi' (or 'single_label' / 'multi_label'), "
            f"got {label_type!r}"
        ) from None


def _scores(y_score: Any) -> np.ndarray:
    score = np.asarray(y_score)
    if score.ndim != 2 or score.shape[0] == 0 or score.shape[1] < 2:
        raise ValueError(f"y_score must be (N, C) with N >= 1 and C >= 2, got {score.shape}")
    if not np.issubdtype(score.dtype, np.floating):
        score = score.astype(np.float64)
    return score


def _indicator(y: Any, name: str, n: int, c: int, single: bool) -> np.ndarray:
    """``y`` as an int64 (N, C) 0/1 matrix; single-label index vectors become one-hot."""
    arr = np.asarray(y)
    if single and arr.ndim == 1:
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} samples, y_score {n}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise ValueError(f"{name}: class indices must be integers")
            arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= c):
            raise ValueError(f"{name}: class indices must be in 0..{c - 1}")
        onehot = np.zeros((n, c), np.int64)
        onehot[np.arange(n), arr] = 1
        return onehot
    if arr.shape != (n, c):
        raise ValueError(f"{name} must have y_score's shape {(n, c)}, got {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must be a 0/1 indicator matrix")
    out = arr.astype(np.int64)
    if single and not np.all(out.sum(axis=1) == 1):
        raise ValueError(f"{name}: single-label rows must be one-hot (exactly one 1 per row)")
    return out


def prediction_from_scores(
    y_score: Any, label_type: str = "multi", threshold: float = 0.5
) -> np.ndarray:
    """The toolbox's predicted labels from class probabilities.

    Args:
        y_score: Probabilities ``(N, C)`` (sigmoid outputs for multi-label, softmax for
            single-label).
        label_type: ``"multi"`` or ``"single"`` (``"multi_label"`` / ``"single_label"``
            accepted too).
        threshold: Multi-label decision threshold, inclusive (``score >= threshold``).
            Ignored for single-label.

    Returns:
        An int64 0/1 indicator matrix ``(N, C)``: multi-label ``score >= threshold`` (a row
        may be all zeros), single-label the one-hot argmax (the first maximum on ties).
    """
    kind = _label_type(label_type)
    score = _scores(y_score)
    if kind == "multi":
        return (score >= threshold).astype(np.int64)
    out = np.zeros(score.shape, np.int64)
    out[np.arange(score.shape[0]), np.argmax(score, axis=1)] = 1
    return out


def _sample_jaccard(y_true: np.ndarray, y_pred: np.ndarray, empty_rows: str, name: str) -> float:
    """Mean over rows of ``|T & P| / |T | P|`` with the empty-union rule of ``empty_rows``."""
    inter = np.logical_and(y_true, y_pred).sum(axis=1)
    union = np.logical_or(y_true, y_pred).sum(axis=1)
    nonempty = union > 0
    if empty_rows == "nan" and not nonempty.all():
        warnings.warn(
            f"{name}: {int((~nonempty).sum())} row(s) with no true and no predicted label "
            "(empty union); the toolbox fails there, returning NaN (empty_rows='skip' "
            "averages over the other rows)",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    if not nonempty.any():
        warnings.warn(
            f"{name}: every row has an empty union of true and predicted labels; returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(np.mean(inter[nonempty] / union[nonempty]))


def scene_metrics(
    y_true: Any,
    y_pred: Any,
    y_score: Any,
    label_type: str = "multi",
    empty_rows: str = "nan",
) -> dict[str, Any]:
    """Every scene-classification score of the SEN12MS toolbox's test script.

    Called like the toolbox: indicator matrices for both label types, scored as
    multilabel-indicator by scikit-learn with ``zero_division=0`` (the toolbox's default
    ``"warn"`` gives the same 0 values, with warnings). ``TP_k, FP_k, FN_k, TN_k`` count
    samples per class; ``T_i`` and ``P_i`` are the true and predicted label sets of
    sample ``i``.

    Scalar scores (floats):

    - ``macroPrec`` / ``microPrec`` / ``samplePrec``, ``macroRec`` / ``microRec`` /
      ``sampleRec``, ``macroF1`` / ``microF1`` / ``sampleF1``, ``macroF2`` / ``microF2``
      / ``sampleF2``: scikit-learn's precision / recall / F-beta with ``average`` macro,
      micro or samples; ill-defined values (class never predicted / never true, empty
      row) are 0, and a class neither true nor predicted adds F = 0 to the macro mean.
    - ``HammingLoss`` = mismatches / (N C); ``subsetAcc`` = exact-match ratio.
    - ``macroAcc`` = mean over classes of ``(TP_k + TN_k) / N``; ``microAcc`` =
      ``(sum TP + sum TN) / (N C)`` = 1 - HammingLoss (the two are always equal).
    - ``sampleAcc`` = mean over rows of ``|T_i & P_i| / |T_i | P_i|`` (see empty rows).
    - ``oneError`` = fraction of rows whose top-scored class (first maximum on ties) is
      not a true label.
    - ``coverageError``, ``rankLoss``, ``labelAvgPrec``: scikit-learn's
      ``coverage_error``, ``label_ranking_loss`` and
      ``label_ranking_average_precision_score`` on ``y_score`` (ties count against the
      ranking; rows without true labels score 0, 0 and 1).
    - ``AverageAcc``: single-label, the toolbox's ``get_AA`` = trace of the row-normalised
      confusion / C, i.e. mean recall over **all** C classes (absent classes count 0);
      multi-label, the mean class-wise accuracy (= ``macroAcc``).
    - ``OverallAcc``: multi-label, the toolbox's ``OA_multi`` = sample Jaccard (=
      ``sampleAcc``) as a ``numpy.float32``; single-label (not computed by the toolbox)
      the fraction of correct samples (= ``subsetAcc`` = ``microF1``).

    Arrays and reports: ``clsReport`` (scikit-learn ``classification_report`` dict with
    target names ``'1'..'C'``, including micro / macro / weighted / samples averages),
    ``classPrec``, ``classRec``, ``classF1``, ``classF2`` (per class), ``classSupport``
    (true samples per class), ``classAcc`` (``(TP_k + TN_k) / N``, shape ``(C,)``),
    ``conf_mat``: single-label the C x C confusion (rows true) normalised by the true
    count of each class; multi-label scikit-learn's C x 2 x 2
    ``multilabel_confusion_matrix`` ``[[TN, FP], [FN, TP]]`` (also under the toolbox's
    key ``multilabel_conf_mat``).

    Deviations from the toolbox (all where it crashes or gives garbage):

    - A row with no true and no predicted label (multi-label only): the toolbox's
      ``sampleAcc`` raises ``AssertionError`` and ``OverallAcc`` is NaN with a numpy
      warning. Here both are NaN with a ``RuntimeWarning`` (``empty_rows="nan"``), or
      the mean over rows with a non-empty union (``empty_rows="skip"``; NaN with a
      warning if there is none).
    - Single-label ``conf_mat`` rows of classes absent from ``y_true`` are zeros (the
      toolbox leaves them uninitialised memory); ``AverageAcc`` counts them as 0, as the
      toolbox documents.
    - Invalid inputs raise ``ValueError`` instead of failing asserts; single-label
      targets and predictions may also be class-index vectors ``(N,)``.
    - ``classAcc`` has shape ``(C,)`` (the toolbox's is ``(C, 1)``); single-label
      ``OverallAcc`` and ``classAcc`` are extras.

    Args:
        y_true: True labels, 0/1 indicator matrix ``(N, C)``; for single-label also a
            class-index vector ``(N,)`` (C taken from ``y_score``).
        y_pred: Predicted labels in the same forms (see :func:`prediction_from_scores`).
        y_score: Class probabilities ``(N, C)`` for the ranking metrics.
        label_type: ``"multi"`` or ``"single"`` (``"multi_label"`` / ``"single_label"``
            accepted too).
        empty_rows: ``"nan"`` or ``"skip"``: ``sampleAcc`` / ``OverallAcc`` on rows with
            an empty union of true and predicted labels (see above).

    Returns:
        The scores keyed by the toolbox's names (:data:`SCENE_METRIC_NAMES`) plus the
        arrays and the report listed above.

    Raises:
        ValueError: On an unknown ``label_type`` / ``empty_rows``, shapes that do not
            match ``y_score``, values other than 0/1, single-label rows that are not
            one-hot, or class indices outside ``0..C-1``.
    """
    kind = _label_type(label_type)
    if empty_rows not in ("nan", "skip"):
        raise ValueError(f"empty_rows must be 'nan' or 'skip', got {empty_rows!r}")
    score = _scores(y_score)
    n, c = score.shape
    single = kind == "single"
    true = _indicator(y_true, "y_true", n, c, single)
    pred = _indicator(y_pred, "y_pred", n, c, single)

    out: dict[str, Any] = {}
    for beta, tag in ((1.0, "F1"), (2.0, "F2")):
        for average, prefix in (("macro", "macro"), ("micro", "micro"), ("samples", "sample")):
            p, r, f, _ = precision_recall_fscore_support(
                true, pred, beta=beta, average=average, zero_division=0
            )
            if beta == 1.0:
                out[f"{prefix}Prec"] = float(p)
                out[f"{prefix}Rec"] = float(r)
            out[f"{prefix}{tag}"] = float(f)
    out["HammingLoss"] = float(hamming_loss(true, pred))
    out["subsetAcc"] = float(accuracy_score(true, pred))

    mcm = multilabel_confusion_matrix(true, pred)  # C x [[TN, FP], [FN, TP]]
    class_acc = (mcm[:, 0, 0] + mcm[:, 1, 1]) / n
    out["macroAcc"] = float(class_acc.mean())
    out["microAcc"] = float((mcm[:, 0, 0].sum() + mcm[:, 1, 1].sum()) / (n * c))
    out["sampleAcc"] = _sample_jaccard(true, pred, empty_rows, "sampleAcc")

    top = np.argmax(score, axis=1)
    out["oneError"] = float(np.mean(true[np.arange(n), top] == 0))
    out["coverageError"] = float(coverage_error(true, score))
    out["rankLoss"] = float(label_ranking_loss(true, score))
    out["labelAvgPrec"] = float(label_ranking_average_precision_score(true, score))

    if single:
        counts = confusion_matrix(true.argmax(axis=1), pred.argmax(axis=1), labels=np.arange(c))
        support = counts.sum(axis=1, keepdims=True)
        conf = np.divide(
            counts, support, out=np.zeros(counts.shape, np.float64), where=support != 0
        )
        out["AverageAcc"] = float(np.trace(conf) / c)
        out["OverallAcc"] = out["subsetAcc"]
        out["conf_mat"] = conf
    else:
        out["AverageAcc"] = out["macroAcc"]
        with warnings.catch_warnings():
            # sampleAcc has warned already about the same rows
            warnings.simplefilter("ignore", RuntimeWarning)
            out["OverallAcc"] = np.float32(_sample_jaccard(true, pred, empty_rows, "OverallAcc"))
        out["conf_mat"] = mcm
        out["multilabel_conf_mat"] = mcm

    p, r, f1, support = precision_recall_fscore_support(
        true, pred, beta=1.0, average=None, zero_division=0
    )
    _, _, f2, _ = precision_recall_fscore_support(
        true, pred, beta=2.0, average=None, zero_division=0
    )
    out["classPrec"], out["classRec"], out["classF1"], out["classF2"] = p, r, f1, f2
    out["classSupport"] = support
    out["classAcc"] = class_acc
    out["clsReport"] = classification_report(
        true,
        pred,
        target_names=[str(k) for k in range(1, c + 1)],
        output_dict=True,
        zero_division=0,
    )
    return out
