"""Failures: each says what to do on stderr and exits with a code a script can act on.

0 ok · 1 failed · 2 configuration or usage · 3 token rejected · 4 no such file · 5 Polar unavailable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.store import Store
from tests.helpers.cli import ERRATA_ID, Cli
from tests.helpers.demo import ada_token

REJECTED = (
    "polar-mcp: Polar rejected the session token: it is expired, revoked or invalid (customer session tokens "
    "live one hour). Create a new customer session and update POLAR_CUSTOMER_SESSION, or set "
    "POLAR_ACCESS_TOKEN and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself.\n"
)
NO_SESSION = (
    "polar-mcp: Not signed in. Run: polar-mcp login SELLER --email EMAIL (SELLER is the slug of the seller's "
    "portal address, https://polar.sh/<slug>/portal); or set POLAR_CUSTOMER_SESSION, or POLAR_ACCESS_TOKEN and "
    "POLAR_CUSTOMER_ID.\n"
)
UNREACHABLE = "http://127.0.0.1:9"
UNAVAILABLE = "polar-mcp: Polar is having trouble right now (HTTP 503); try again in a minute.\n"


@pytest.fixture
def api(double: RunningDouble, monkeypatch: pytest.MonkeyPatch) -> RunningDouble:
    monkeypatch.setenv("POLAR_API_URL", double.base_url)
    return double


COMMANDS = [["list"], ["list", "--json"], ["link", "errata.txt"], ["download", "errata.txt", "--json"]]
COMMAND_IDS = ["list", "list-json", "link", "download-json"]


def _in(folder: Path, argv: list[str]) -> list[str]:
    return [*argv, "--dir", str(folder)] if argv[0] == "download" else argv


@pytest.mark.parametrize("argv", COMMANDS, ids=COMMAND_IDS)
def test_an_expired_session_exits_3_saying_how_to_renew_it(
    cli: Cli, store: Store, api: RunningDouble, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str]
) -> None:
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", ada_token(store, ttl=-1))
    run = cli(*_in(tmp_path, argv))
    assert (run.code, run.out, run.messages) == (3, "", REJECTED)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", COMMANDS, ids=COMMAND_IDS)
def test_no_session_configured_exits_2_saying_what_to_set(
    cli: Cli, api: RunningDouble, tmp_path: Path, argv: list[str]
) -> None:
    run = cli(*_in(tmp_path, argv))
    assert (run.code, run.out, run.messages) == (2, "", NO_SESSION)


def test_an_organization_token_given_as_the_session_exits_2_before_anything_is_sent(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_API_URL", UNREACHABLE)  # a request would fail with exit 5 instead
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", "polar_oat_an_organization_token_by_mistake")
    run = cli("list")
    assert (run.code, run.out, run.messages) == (
        2,
        "",
        "polar-mcp: The configured token is an organization access token (polar_oat_…), but the customer "
        "portal needs a customer or member session token. Either create a customer session and set "
        "POLAR_CUSTOMER_SESSION, or set POLAR_ACCESS_TOKEN with POLAR_CUSTOMER_ID so polar-mcp mints "
        "sessions itself.\n",
    )


def test_a_burst_of_server_errors_beyond_the_retries_exits_5_after_three_attempts(
    cli: Cli, store: Store, token: str
) -> None:
    # Real backoff: two retries, 0.25-0.5 s then 0.5-1 s. Looking an id up scans the catalog before
    # anything else is asked, so every 503 answered went to that one request and its retries.
    store.faults.update({"errors_next": 10})
    run = cli("link", ERRATA_ID)
    assert (run.code, run.out, run.messages) == (5, "", UNAVAILABLE)
    assert store.faults.errors_next == 10 - 3


def test_polar_rate_limiting_with_a_long_retry_after_exits_5_saying_when_to_retry(
    cli: Cli, store: Store, token: str
) -> None:
    store.faults.update({"rate_limit_next": 10, "retry_after": 120})
    run = cli("link", "errata.txt")
    assert (run.code, run.out, run.messages) == (
        5,
        "",
        "polar-mcp: Polar's rate limit was reached; retry after 120 s.\n",
    )


def test_an_answer_that_is_not_json_exits_1(cli: Cli, store: Store, token: str) -> None:
    store.faults.update({"non_json_next": 10})
    run = cli("list")
    assert (run.code, run.out) == (1, "")
    assert run.messages == (
        "polar-mcp: Polar's address answered with text/html instead of JSON: a proxy, a captive portal or a "
        "wrong POLAR_API_URL may be in the way.\n"
    )


def test_an_unreachable_api_exits_5_naming_the_url_to_check(
    cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_API_URL", UNREACHABLE)
    monkeypatch.setenv("POLAR_MCP_TIMEOUT", "0.25")  # no time for retries
    run = cli("list")
    assert (run.code, run.out, run.messages) == (
        5,
        "",
        "polar-mcp: Could not reach Polar at http://127.0.0.1:9 (ConnectError); "
        "check the network and POLAR_API_URL / POLAR_SERVER, then retry.\n",
    )


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        (
            {"POLAR_MCP_TIMEOUT": "abc"},
            ["list"],
            "POLAR_MCP_TIMEOUT / --timeout: Input should be a valid number, unable to parse string as a number "
            "(got 'abc')",
        ),
        (
            {},
            ["list", "--timeout", "abc"],
            "POLAR_MCP_TIMEOUT / --timeout: Input should be a valid number, unable to parse string as a number "
            "(got 'abc')",
        ),
        ({}, ["doctor", "--timeout", "0"], "POLAR_MCP_TIMEOUT / --timeout: Input should be greater than 0 (got '0')"),
        (
            {},
            ["list", "--server", "staging"],
            "POLAR_SERVER / --server: Input should be 'production' or 'sandbox' (got 'staging')",
        ),
        (
            {},
            ["--server", "staging", "link", "x"],
            "POLAR_SERVER / --server: Input should be 'production' or 'sandbox' (got 'staging')",
        ),
        (
            {"POLAR_API_URL": "ftp://example.com"},
            ["doctor"],
            "POLAR_API_URL / --api-url: must be an http(s) URL such as https://api.polar.sh (got 'ftp://example.com')",
        ),
        (
            {"POLAR_CUSTOMER_ID": "ada-1815"},
            ["list"],
            "POLAR_CUSTOMER_ID / --customer-id: must be a Polar id (a UUID); use the EXTERNAL_ variant for your "
            "own ids (got 'ada-1815')",
        ),
    ],
    ids=["timeout-env", "timeout-flag", "timeout-zero", "server-flag", "server-flag-first", "api-url", "customer-id"],
)
def test_an_invalid_setting_exits_2_naming_the_variable_and_the_flag(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = cli(*argv)
    assert (run.code, run.out, run.err) == (2, "", f"polar-mcp: Invalid configuration: {message}\n")


def test_an_organization_token_without_a_customer_is_refused_without_showing_the_token(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", "polar_oat_secret_value_for_this_test")
    run = cli("list")
    assert (run.code, run.out, run.err) == (
        2,
        "",
        "polar-mcp: Invalid configuration: POLAR_ACCESS_TOKEN mints customer sessions: also set "
        "POLAR_CUSTOMER_ID or POLAR_EXTERNAL_CUSTOMER_ID\n",
    )


def test_tokens_cannot_be_given_as_flags(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--customer-session", "--access-token"):
        with pytest.raises(SystemExit) as exited:
            cli("list", flag, "polar_cst_on_the_command_line")
        assert exited.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err
