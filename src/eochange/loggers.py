"""A CSV logger that keeps the rows of earlier runs in the same folder.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so a run
resumed with ``--ckpt_path last`` would lose the curves of the epochs before the
interruption. :class:`ResumableCSVLogger` appends instead (widening the header when new
columns appear), so ``metrics.csv`` holds the whole history of the run.
"""

from __future__ import annotations

import csv
import os

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Adopt the header of an existing ``metrics.csv`` instead of deleting it."""
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                self.metrics_keys = sorted(next(csv.reader(handle), []))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to an existing ``metrics.csv`` (see the module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer, created on first use."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
