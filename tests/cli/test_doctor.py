"""`polar-mcp doctor`: configuration, token kind (never its value), reachability and the session."""

from __future__ import annotations

import re

import pytest

from polar_mcp import __version__
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, DEMO_ORG_TOKEN
from polar_mcp.double.store import Store
from tests.helpers.cli import Cli
from tests.helpers.demo import ada_token

VALID = re.compile(r"Session:   valid, expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 59 min\)")
ANY_TOKEN = re.compile(r"polar_(cst|mst|oat)_[A-Za-z0-9]")
REJECTED = (
    "Session:   rejected — Polar rejected the session token: it is expired, revoked or invalid "
    "(customer session tokens live one hour). Create a new customer session and update POLAR_CUSTOMER_SESSION, "
    "or set POLAR_ACCESS_TOKEN and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself."
)


SESSION_ORDER = "Order:     POLAR_CUSTOMER_SESSION (in use) > POLAR_ACCESS_TOKEN (not set) > stored sign-in (none)"
MINTED_ORDER = "Order:     POLAR_CUSTOMER_SESSION (not set) > POLAR_ACCESS_TOKEN (in use) > stored sign-in (none)"
NONE_ORDER = "Order:     POLAR_CUSTOMER_SESSION (not set) > POLAR_ACCESS_TOKEN (not set) > stored sign-in (none)"


def _head(double: RunningDouble, token: str, order: str = SESSION_ORDER) -> list[str]:
    return [
        f"polar-mcp {__version__}",
        f"API:       {double.base_url} (POLAR_API_URL)",
        f"Token:     {token}",
        order,
    ]


@pytest.fixture
def api(double: RunningDouble, monkeypatch: pytest.MonkeyPatch) -> RunningDouble:
    monkeypatch.setenv("POLAR_API_URL", double.base_url)
    return double


def test_a_valid_session_passes_every_check_showing_only_the_token_kind(
    cli: Cli, double: RunningDouble, token: str
) -> None:
    run = cli("doctor")
    assert (run.code, run.err) == (0, "")
    lines = run.out.splitlines()
    assert lines[:-1] == [*_head(double, "session from POLAR_CUSTOMER_SESSION, polar_cst_…"), "Reachable: yes"]
    assert VALID.fullmatch(lines[-1]), lines[-1]
    assert token not in run.out
    assert not ANY_TOKEN.search(run.out)


@pytest.mark.parametrize("kind", ["expired", "unknown"])
def test_an_expired_or_unknown_session_is_rejected_with_exit_3(
    cli: Cli, store: Store, api: RunningDouble, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    token = ada_token(store, ttl=-1) if kind == "expired" else "polar_cst_" + "x" * 43
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", token)
    run = cli("doctor")
    assert (run.code, run.err) == (3, "")
    assert run.out.splitlines() == [
        *_head(api, "session from POLAR_CUSTOMER_SESSION, polar_cst_…"),
        "Reachable: yes",
        REJECTED,
    ]
    assert token not in run.out


def test_no_token_at_all_exits_2_and_says_what_to_set(cli: Cli, api: RunningDouble) -> None:
    run = cli("doctor")
    assert run.code == 2
    assert run.out.splitlines() == [
        *_head(api, "none", NONE_ORDER),
        "Reachable: yes",
        "Session:   none configured (run polar-mcp login, or set POLAR_CUSTOMER_SESSION, "
        "or POLAR_ACCESS_TOKEN + POLAR_CUSTOMER_ID)",
    ]
    # The runtime's start-up warning (worded for MCP tools) is logged to stderr as well.
    assert run.messages == ""


def test_an_unreachable_api_exits_5_before_checking_the_session(
    cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_API_URL", "http://127.0.0.1:9")
    run = cli("doctor")
    assert (run.code, run.err) == (5, "")
    assert run.out.splitlines() == [
        f"polar-mcp {__version__}",
        "API:       http://127.0.0.1:9 (POLAR_API_URL)",
        "Token:     session from POLAR_CUSTOMER_SESSION, polar_cst_…",
        SESSION_ORDER,
        "Reachable: no",
    ]
    assert token not in run.out


def test_minted_mode_says_so_and_never_prints_the_organization_token(
    cli: Cli, api: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", DEMO_ORG_TOKEN)
    monkeypatch.setenv("POLAR_EXTERNAL_CUSTOMER_ID", DEMO_CUSTOMER_EXTERNAL_ID)
    run = cli("doctor")
    assert (run.code, run.err) == (0, "")
    lines = run.out.splitlines()
    assert lines[:-1] == [
        *_head(
            api, f"minted from POLAR_ACCESS_TOKEN (polar_oat_…) for customer {DEMO_CUSTOMER_EXTERNAL_ID}", MINTED_ORDER
        ),
        "Reachable: yes",
    ]
    assert lines[-1].endswith(" (renewed automatically)")
    assert VALID.fullmatch(lines[-1].removesuffix(" (renewed automatically)")), lines[-1]
    assert not ANY_TOKEN.search(run.out)


def test_minted_mode_with_an_unknown_organization_token_exits_2_as_a_configuration_error(
    cli: Cli, api: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rejected organization token is reported as configuration (2), not as auth (3) like a session.
    bogus = "polar_oat_" + "q" * 40
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", bogus)
    monkeypatch.setenv("POLAR_EXTERNAL_CUSTOMER_ID", DEMO_CUSTOMER_EXTERNAL_ID)
    run = cli("doctor")
    assert (run.code, run.err) == (2, "")
    assert run.out.splitlines() == [
        *_head(
            api, f"minted from POLAR_ACCESS_TOKEN (polar_oat_…) for customer {DEMO_CUSTOMER_EXTERNAL_ID}", MINTED_ORDER
        ),
        "Reachable: yes",
        "Session:   rejected — Polar rejected POLAR_ACCESS_TOKEN: the organization token is invalid, expired or "
        "revoked. Create a new organization access token with the customer_sessions:write scope.",
    ]
    assert bogus not in run.out


def test_a_session_alongside_an_organization_token_is_used_and_the_token_said_ignored(
    cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", DEMO_ORG_TOKEN)
    run = cli("doctor")
    assert run.code == 0
    assert "Token:     session from POLAR_CUSTOMER_SESSION, polar_cst_… (POLAR_ACCESS_TOKEN ignored)\n" in run.out
    assert DEMO_ORG_TOKEN not in run.out + run.err


def test_the_api_version_is_shown_when_set(cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_API_VERSION", "2026-04")
    run = cli("doctor")
    assert run.code == 0
    assert run.out.splitlines()[2] == "Version:   Polar-Version 2026-04"
