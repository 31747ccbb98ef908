"""``python -m eochange``."""

from eochange.cli import entry

entry()
