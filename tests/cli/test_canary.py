"""A distinctive token, run through every command at DEBUG level, never shows up in any output."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from tests.helpers.cli import Cli, Run

CANARY = "polar_cst_CaNaRy7Zq9XwV3mK8pL2nR5tY1uB4cD6eF0gH"
ORG_CANARY = "polar_oat_CaNaRyOrg7Zq9XwV3mK8pL2nR5tY1uB4cD6eF0gH"
SIGNED_LINK = re.compile(r"/downloadables/[A-Za-z0-9_.-]{20,}|/polar-files/")


def _every_command(cli: Cli, folder: Path) -> list[Run]:
    argvs = [
        ["list"],
        ["list", "--json"],
        ["list", "--query", "rust", "--limit", "1"],
        ["list", "--benefit-id", "not-a-benefit"],
        ["link", "errata.txt"],
        ["link", "errata.txt", "--json"],
        ["link", "rust"],
        ["download", "errata.txt", "--dir", str(folder)],
        ["download", "README.md", "--dir", str(folder), "--json"],
        ["doctor"],
    ]
    return [cli(*argv) for argv in argvs]


def _assert_absent(runs: list[Run], *secrets: str) -> None:
    for run in runs:
        for secret in secrets:
            assert secret not in run.out
            assert secret not in run.err
        assert "CaNaRy" not in run.out + run.err


@pytest.fixture
def debug(double: RunningDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_API_URL", double.base_url)
    monkeypatch.setenv("POLAR_MCP_LOG_LEVEL", "DEBUG")


@pytest.mark.usefixtures("debug")
def test_a_valid_session_token_appears_in_no_output_of_any_command(
    cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    store.sessions[CANARY] = dataclasses.replace(store.open_session(ada.id, None), token=CANARY)
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", CANARY)
    runs = _every_command(cli, tmp_path)
    assert [run.code for run in runs] == [0, 0, 0, 2, 0, 0, 4, 0, 0, 0]
    assert "DEBUG" in runs[0].err  # the logs were on
    _assert_absent(runs, CANARY)


@pytest.mark.usefixtures("debug")
def test_a_rejected_session_token_appears_in_no_output_of_any_command(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", CANARY + "Unknown")
    runs = _every_command(cli, tmp_path)
    # Every command is refused by Polar (3), except the malformed benefit id, refused before any call (2).
    assert [run.code for run in runs] == [3, 3, 3, 2, 3, 3, 3, 3, 3, 3]
    _assert_absent(runs, CANARY)


@pytest.mark.usefixtures("debug")
def test_neither_the_organization_token_nor_the_sessions_it_mints_appear_in_any_output(
    cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    store.add_org_token(ORG_CANARY, organization_id=press.id)
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", ORG_CANARY)
    monkeypatch.setenv("POLAR_EXTERNAL_CUSTOMER_ID", DEMO_CUSTOMER_EXTERNAL_ID)
    sessions_before = set(store.sessions)
    runs = _every_command(cli, tmp_path)
    minted = set(store.sessions) - sessions_before
    assert [run.code for run in runs] == [0, 0, 0, 2, 0, 0, 4, 0, 0, 0]
    assert minted
    _assert_absent(runs, ORG_CANARY, *minted)


@pytest.mark.usefixtures("debug", "token")
def test_at_debug_level_a_download_logs_no_signed_link(cli: Cli, tmp_path: Path) -> None:
    # Signed links grant the download to whoever holds them: only `link` prints one, on stdout.
    # httpcore2's DEBUG records carry response headers, among them the storage redirect's Location.
    runs = [cli("download", "errata.txt", "--dir", str(tmp_path)), cli("link", "errata.txt")]
    assert [run.code for run in runs] == [0, 0]
    leaked = [
        line[max(0, found.start() - 60) : found.end() + 60]
        for run in runs
        for line in run.err.splitlines()
        if (found := SIGNED_LINK.search(line))
    ]
    assert leaked == []


def test_a_token_in_an_invalid_configuration_is_not_echoed(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", ORG_CANARY)
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", CANARY)
    monkeypatch.setenv("POLAR_CUSTOMER_ID", "not-a-uuid")
    run = cli("list")
    assert run.code == 2
    _assert_absent([run], CANARY, ORG_CANARY)
