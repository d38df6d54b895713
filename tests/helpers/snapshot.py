"""Checked-in snapshots of what a model sees, compared whole and rewritten only on request.

`UPDATE_TOOLSNAPS=1 pytest ...` writes every snapshot a test compares against (as github-mcp-server's
`UPDATE_TOOLSNAPS` does), so a deliberate change is one command and a reviewable diff. Without it, a
missing snapshot fails the test. Under CI (`CI=true`) nothing is ever written: a missing snapshot
fails even with UPDATE_TOOLSNAPS set, and an existing one is only compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

UPDATE = "UPDATE_TOOLSNAPS"
TRUE = ("1", "true", "yes")


def _set(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in TRUE


def render(value: Any) -> str:
    """A snapshot file's text: JSON indented by two, UTF-8 as is, ending in a newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def assert_matches_snapshot(path: Path, actual: Any, *, environ: Mapping[str, str] = os.environ) -> None:
    """`actual` (JSON-able) equals the snapshot at `path`; with UPDATE_TOOLSNAPS outside CI, it becomes it."""
    in_ci = _set(environ, "CI")
    if not path.exists():
        if in_ci:
            pytest.fail(
                f"snapshot {path.name} is missing, and CI never writes one: run `{UPDATE}=1 pytest` "
                "locally and commit the file"
            )
        if not _set(environ, UPDATE):
            pytest.fail(f"snapshot {path.name} is missing: run `{UPDATE}=1 pytest` to write it, then commit it")
    if _set(environ, UPDATE) and not in_ci:
        path.write_text(render(actual), encoding="utf-8")
        return
    assert actual == json.loads(path.read_text(encoding="utf-8")), f"differs from {path.name} ({UPDATE}=1 rewrites it)"
