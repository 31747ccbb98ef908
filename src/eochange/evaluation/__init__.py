"""Evaluation of prediction files against reference files (drop-ins for official tools)."""
