"""Exceptions raised for user mistakes: bad files, bad arguments, bad layouts.

The CLI turns any :class:`EOChangeError` into one line on stderr and a non-zero exit
code, without a traceback; everything else is a bug and keeps its traceback.
"""


class EOChangeError(Exception):
    """Base class of the errors a user can fix (input files, arguments)."""


class DataError(EOChangeError, ValueError):
    """A file or folder does not have the content, shape or layout that was expected."""


class ConfigError(EOChangeError, ValueError):
    """An argument or configuration value is invalid."""
