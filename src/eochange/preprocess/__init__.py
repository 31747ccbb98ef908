"""The ERCNN-DRS deep-temporal preprocessing pipeline (rsdtlib's, without TensorFlow)."""
