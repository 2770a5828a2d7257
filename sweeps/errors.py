"""The orchestrator's user-fixable errors (a spec's own are `sweeps.spec.SpecError`)."""

from __future__ import annotations


class SweepError(ValueError):
    """A problem running a sweep that the user can fix (another driver holds the sweep, say)."""
