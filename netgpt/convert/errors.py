"""The one error a conversion raises for bad input."""

from __future__ import annotations


class ConvertError(ValueError):
    """Bad input to a conversion (not a checkpoint, damaged shards, OUT in the way, a missing run piece).

    Raised before anything is written; the message is one line that names the path and what was expected, so
    `netgpt convert` can print it as it is and exit 2."""


class VerificationError(RuntimeError):
    """What was written does not read back as the consolidated weights: a bug or a failing disk, not bad
    input; the output folder is not published."""
