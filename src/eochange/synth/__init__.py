"""Synthetic datasets in the layouts of the real ones, for tests, demos and benchmarks."""

from eochange.synth.dynamicearthnet import SynthSummary, make_dynamicearthnet

__all__ = ["SynthSummary", "make_dynamicearthnet"]
