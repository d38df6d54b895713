"""The snapshot helper: writes only when asked, refuses a missing snapshot, and never writes under CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.snapshot import assert_matches_snapshot, render

TOOLS = [{"name": "list_downloadables", "title": "List purchased files — «all» of them"}]


def test_a_snapshot_that_matches_passes_and_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "tools.snapshot.json"
    path.write_text(render(TOOLS), encoding="utf-8")
    before = path.stat().st_mtime_ns

    assert_matches_snapshot(path, TOOLS, environ={})

    assert (path.read_text(encoding="utf-8"), path.stat().st_mtime_ns) == (render(TOOLS), before)


def test_a_snapshot_that_differs_fails_and_says_how_to_rewrite_it(tmp_path: Path) -> None:
    path = tmp_path / "tools.snapshot.json"
    path.write_text(render([{"name": "old"}]), encoding="utf-8")

    hint = "differs from tools.snapshot.json (UPDATE_TOOLSNAPS=1 rewrites it)"
    with pytest.raises(AssertionError, match=re.escape(hint)):
        assert_matches_snapshot(path, TOOLS, environ={})

    assert path.read_text(encoding="utf-8") == render([{"name": "old"}])


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "outdated"])
def test_update_toolsnaps_writes_the_snapshot_and_passes(tmp_path: Path, exists: bool) -> None:
    path = tmp_path / "tools.snapshot.json"
    if exists:
        path.write_text(render([{"name": "old"}]), encoding="utf-8")

    assert_matches_snapshot(path, TOOLS, environ={"UPDATE_TOOLSNAPS": "1"})

    assert path.read_text(encoding="utf-8") == (
        '[\n  {\n    "name": "list_downloadables",\n    "title": "List purchased files — «all» of them"\n  }\n]\n'
    )


def test_a_missing_snapshot_fails_without_update_toolsnaps_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tools.snapshot.json"

    with pytest.raises(pytest.fail.Exception) as failed:
        assert_matches_snapshot(path, TOOLS, environ={})

    assert str(failed.value) == (
        "snapshot tools.snapshot.json is missing: run `UPDATE_TOOLSNAPS=1 pytest` to write it, then commit it"
    )
    assert not path.exists()


@pytest.mark.parametrize("update", [{}, {"UPDATE_TOOLSNAPS": "true"}], ids=["plain", "update-asked"])
def test_under_ci_a_missing_snapshot_fails_even_when_an_update_is_asked(tmp_path: Path, update: dict[str, str]) -> None:
    path = tmp_path / "tools.snapshot.json"

    with pytest.raises(pytest.fail.Exception) as failed:
        assert_matches_snapshot(path, TOOLS, environ={"CI": "true", **update})

    assert str(failed.value) == (
        "snapshot tools.snapshot.json is missing, and CI never writes one: run `UPDATE_TOOLSNAPS=1 pytest` "
        "locally and commit the file"
    )
    assert not path.exists()


def test_under_ci_an_outdated_snapshot_is_compared_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "tools.snapshot.json"
    path.write_text(render([{"name": "old"}]), encoding="utf-8")

    with pytest.raises(AssertionError, match=re.escape("differs from tools.snapshot.json")):
        assert_matches_snapshot(path, TOOLS, environ={"CI": "true", "UPDATE_TOOLSNAPS": "1"})

    assert path.read_text(encoding="utf-8") == render([{"name": "old"}])
