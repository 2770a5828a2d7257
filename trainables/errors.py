"""The trial's failure type."""

from __future__ import annotations


class TrialError(RuntimeError):
    """A trial cannot run or did not finish (NaN/inf loss, bad level, bad config); the message says why.

    `retryable = False`: each of these fails again the same way on a retry
    (the same config and seed give the same non-finite loss), so the sweep
    records the failure at once instead of spending its retries (sweeps/packs.py
    reads the attribute; any exception without it, an out-of-memory error say,
    is retried).
    """

    retryable = False
