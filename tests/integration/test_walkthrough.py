"""`make demo`'s second session: a buyer with no token signs in with an e-mail code, then lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from polar_mcp.walkthrough import sign_in_session

pytestmark = pytest.mark.anyio


async def test_the_demo_signs_in_from_the_code_request_to_a_listing_in_its_own_config_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await sign_in_session(str(tmp_path)) == 0
    shown = capsys.readouterr().out
    assert "Not signed in to Polar." in shown
    assert "If a•••@example.com bought from Ferris Press, a code is on its way" in shown
    assert "Signed in at Ferris Press as Ada Lovelace (a•••@example.com) until " in shown
    assert "Files 1–5 of 11 from Ferris Press (page 1 of 3):" in shown
    assert [path.name for path in tmp_path.iterdir()] == ["signin.json"]
