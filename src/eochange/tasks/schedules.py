"""Per-step learning-rate schedules over a whole run.

A schedule is a factor of the base learning rate as a function of the fraction of the
run's optimiser steps already taken (``trainer.estimated_stepping_batches``): the
reference CAC's poly decay, and a cosine decay offered for short ERCNN-DRS runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from eochange.errors import ConfigError


def poly(power: float) -> Callable[[float], float]:
    """``(1 - t) ** power``: the poly decay to 0 (CAC, DeepLab)."""
    return lambda t: max(0.0, 1.0 - t) ** power


def cosine(t: float) -> float:
    """``(1 + cos(pi t)) / 2``: the cosine decay to 0 (SGDR without restarts)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def run_steps(trainer: L.Trainer, name: str) -> float:
    """The optimiser steps of the whole run.

    Raises:
        ConfigError: An unbounded run (no ``max_epochs`` or ``max_steps``).
    """
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total) or total < 1:
        raise ConfigError(f"trainer: the {name} needs a finite run; set trainer.max_epochs "
                          "or trainer.max_steps")  # fmt: skip
    return float(total)


def stepwise(
    optimizer: torch.optim.Optimizer,
    trainer: L.Trainer,
    factor: Callable[[float], float],
    name: str,
) -> dict[str, Any]:
    """``configure_optimizers``' answer: ``optimizer`` with ``factor`` applied every step.

    Args:
        optimizer: The optimiser (its learning rates are the base ones).
        trainer: The run's trainer (for its number of steps).
        factor: Learning-rate factor of the fraction of the run done, ``t`` in [0, 1].
        name: The schedule's name in errors (e.g. ``poly schedule``).

    Raises:
        ConfigError: An unbounded run.
    """
    total = run_steps(trainer, name)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step / total))
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}  # fmt: skip
