"""The trial's failure type."""

from __future__ import annotations


class TrialError(RuntimeError):
    """A trial cannot run or did not finish (NaN/inf loss, bad level, bad config); the message says why."""
