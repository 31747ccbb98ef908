"""A callback that kills its own process (SIGKILL) at the start of a given epoch."""

from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtEpoch(Callback):
    """Simulates a crash: no clean-up, no checkpoint beyond what was already written."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
