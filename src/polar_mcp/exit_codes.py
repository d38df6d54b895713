"""The CLI's exit codes: scripts tell configuration, authentication, lookup and outage apart."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    CONFIG = 2
    AUTH = 3
    NOT_FOUND = 4
    UNAVAILABLE = 5
