"""A clock for tests, injected into the double's store (and anything else taking `() -> float`)."""

from __future__ import annotations


class ManualClock:
    """Epoch seconds that only move when advanced."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
