"""Synthetic datasets in the layouts of the real ones, for tests, demos and benchmarks."""

from eochange.synth.dfc2020 import Dfc2020Summary, make_dfc2020
from eochange.synth.dynamicearthnet import SynthSummary, make_dynamicearthnet
from eochange.synth.s1s2 import PlantedEvent, S1S2Summary, make_s1s2
from eochange.synth.sen12ms import Sen12msSummary, make_sen12ms

__all__ = [
    "Dfc2020Summary",
    "PlantedEvent",
    "S1S2Summary",
    "Sen12msSummary",
    "SynthSummary",
    "make_dfc2020",
    "make_dynamicearthnet",
    "make_s1s2",
    "make_sen12ms",
]
