"""Errors meant for users: one line naming the problem and the fix.

The CLI prints ``str(error)`` of any :class:`PotstillError` as one line and exits with
status 2; a traceback is only shown for bugs.
"""


class PotstillError(ValueError):
    """Bad input or configuration; the message says what was wrong and what is accepted."""


class MissingLabelError(PotstillError):
    """A frame lacks the labels a stage asked for."""


class InvalidLabelError(PotstillError):
    """A label is present but unusable (NaN, wrong shape)."""
