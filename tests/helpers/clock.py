"""The one fake clock: monotonic and wall time that move only when the code under test sleeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

NOW = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
"""The wall-clock moment every unit test starts at."""


@dataclass
class FakeTime:
    """A monotonic clock and a wall clock that only move when the code under test sleeps (or a test says so).

    `followers` move along with it: a double's store clock, so a wait ages the double as a real one would.
    """

    monotonic: float = 1_000.0
    wall: float = NOW.timestamp()
    waits: list[float] = field(default_factory=list[float])
    followers: list[Callable[[float], None]] = field(default_factory=list[Callable[[float], None]])

    def clock(self) -> float:
        return self.monotonic

    def wall_clock(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds
        for follow in self.followers:
            follow(seconds)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.advance(seconds)


class ManualClock:
    """Epoch seconds that only move when advanced."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
