"""The two ERCNN-DRS sensor eras and every parameter of their pipeline.

Values are the published ERCNN-DRS / rsdtlib settings (``docs/ercnn.md``); each can be
overridden with :func:`dataclasses.replace` or on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from eochange.errors import ConfigError


@dataclass(frozen=True)
class Era:
    """One sensor era: bands, masks, stacking, windowing and labelling parameters.

    Args:
        name: ``s1s2`` or ``ers_ls5``.
        sar_bands: Bands of each SAR orbit direction (linear intensity).
        optical_bands: Optical bands, in the model's order.
        sar_feature: EOPatch ``data`` feature of the SAR observations.
        optical_feature: EOPatch ``data`` feature of the optical observations.
        sar_mask: EOPatch ``mask`` feature of valid SAR pixels.
        optical_mask: EOPatch ``mask`` feature of valid optical pixels (for Landsat the QA
            band, decoded with ``qa_invalid_bits``).
        qa_invalid_bits: QA bits that make a pixel invalid (0: the mask is boolean).
        start: First day of the era's series.
        end: Last day of the era's series.
        step: Stacking bin δ (one written step per bin at most).
        window: Window length Δ.
        min_steps: Minimum steps of a window ω.
        max_steps: Maximum steps of a window Ω (the model's padded length).
        stride_training: Window stride ρ in steps, for training (triplets).
        stride_inference: Window stride ρ in steps, for inference.
        tile: Tile side (pixels).
        deadzone: Tile overlap on each side (pixels).
        enl: Equivalent number of looks of the SAR omnibus test.
        significance: Significance level of the omnibus test.
        label_factor: Label = clip(change frequency x |dENDISI| x factor, 0, 1).
        shift: ENDISI shift A (0.25 in rsdtlib; the original scripts used 0.5 for Limassol).
        blue: Index of the blue band among ``optical_bands``.
        green: Index of the green band.
        swir1: Index of SWIR1.
        swir2: Index of SWIR2.
    """

    name: str
    sar_bands: tuple[str, ...]
    optical_bands: tuple[str, ...]
    sar_feature: str
    optical_feature: str
    sar_mask: str
    optical_mask: str
    qa_invalid_bits: int
    start: date
    end: date
    step: timedelta
    window: timedelta
    min_steps: int
    max_steps: int
    stride_training: int
    stride_inference: int
    tile: int
    deadzone: int
    enl: float
    significance: float
    label_factor: float
    shift: float
    blue: int
    green: int
    swir1: int
    swir2: int

    @property
    def channels(self) -> int:
        """Model input channels: SAR ascending + SAR descending + optical."""
        return 2 * len(self.sar_bands) + len(self.optical_bands)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The model's channel order ``[asc, dsc, optical]``."""
        return (*(f"asc_{b}" for b in self.sar_bands), *(f"dsc_{b}" for b in self.sar_bands),
                *self.optical_bands)  # fmt: skip


S1S2 = Era(
    name="s1s2",
    sar_bands=("VV", "VH"),
    optical_bands=(
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B10",
        "B11",
        "B12",
    ),  # fmt: skip
    sar_feature="L1_GND",
    optical_feature="L1C_data",
    sar_mask="dataMask",
    optical_mask="dataMask",
    qa_invalid_bits=0,
    start=date(2017, 1, 1),
    end=date(2021, 1, 17),
    step=timedelta(days=2),
    window=timedelta(days=182),
    min_steps=35,
    max_steps=92,
    stride_training=1,
    stride_inference=5,
    tile=32,
    deadzone=0,
    enl=4.0,
    significance=0.001,
    label_factor=10.0,
    shift=0.25,
    blue=1,
    green=2,
    swir1=11,
    swir2=12,
)
"""Sentinel-1 (VV, VH per orbit direction) + Sentinel-2 L1C (13 bands), 2017-2021."""

ERS_LS5 = Era(
    name="ers_ls5",
    sar_bands=("intensity",),
    optical_bands=("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
    sar_feature="intensity",
    optical_feature="Bands",
    sar_mask="IS_DATA",
    optical_mask="QA",
    qa_invalid_bits=0b10101011100,
    start=date(1991, 7, 1),
    end=date(2011, 9, 1),
    step=timedelta(seconds=1),
    window=timedelta(days=365),
    min_steps=25,
    max_steps=110,
    stride_training=1,
    stride_inference=5,
    tile=32,
    deadzone=0,
    enl=3.0,
    significance=0.1,
    label_factor=30.0,
    shift=0.25,
    blue=0,
    green=1,
    swir1=4,
    swir2=6,
)
"""ERS-1/2 (one intensity band per orbit direction) + Landsat-5 TM (7 bands incl. the
thermal B6; QA bits 2, 3, 4, 6, 8, 10 invalid), 1991-2011."""

ERAS = {era.name: era for era in (S1S2, ERS_LS5)}


def get_era(name: str) -> Era:
    """The era called ``name`` (``s1s2`` or ``ers_ls5``).

    Raises:
        ConfigError: Unknown name.
    """
    if name not in ERAS:
        raise ConfigError(f"era: expected one of {', '.join(ERAS)}, got {name!r}")
    return ERAS[name]
