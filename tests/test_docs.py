"""The docs a newcomer follows stay true to the code."""

from __future__ import annotations

import json
from pathlib import Path

from polar_mcp.config import OPTIONS

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_opens_with_the_demo_and_test_commands() -> None:
    head = README[: README.index("## ")]
    assert "make demo" in head
    assert "make test" in head


def test_every_setting_is_documented_with_its_variable_and_flag() -> None:
    for option in OPTIONS:
        row = next((line for line in README.splitlines() if line.startswith(f"| `{option.env}` |")), None)
        assert row is not None, f"{option.env} is missing from the README's configuration table"
        if option.flag is None:
            assert "environment only" in row
        else:
            assert f"`{option.flag}`" in row


def test_every_json_block_in_the_readme_parses() -> None:
    blocks = README.split("```json")[1:]
    assert blocks
    for block in blocks:
        json.loads(block.split("```")[0])
