"""Start-up checks every setting and service, and says what is wrong by variable."""

from __future__ import annotations

import os

import pytest

from polar_mcp.cli import main
from polar_mcp.config import ConfigError, load_settings
from polar_mcp.double.seed import DEMO_READONLY_ORG_TOKEN, DEMO_TEAM_ORG_TOKEN
from polar_mcp.double.store import CUSTOMER_SESSIONS_WRITE, Store
from polar_mcp.exit_codes import ExitCode
from polar_mcp.hosted.app import SigninGate, preflight
from polar_mcp.hosted.options import hosted_options
from polar_mcp.http import create_app
from tests.helpers.hosted import SECRET_KEY, free_port

MINIMAL = {"POLAR_MCP_AUTH": "signin"}

EVERY_PROBLEM = (
    "Invalid signin configuration: "
    "POLAR_MCP_PUBLIC_URL / --public-url: set the https address buyers reach, e.g. https://files.example.com; "
    "POLAR_ORGANIZATION / --organization: set the seller's slug (from its portal address); "
    "POLAR_ACCESS_TOKEN: set an organization token (polar_oat_…) with the scopes customer_sessions:write and "
    "customers:read; "
    "POLAR_MCP_SECRET_KEY: set at least 32 random characters, the same on every replica "
    '(python -c "import secrets; print(secrets.token_urlsafe(48))"); '
    "POLAR_MCP_SMTP_URL: set the mail server, e.g. smtp://user:password@mail.example.com:587; "
    "POLAR_MCP_MAIL_FROM / --mail-from: set the From address, e.g. Files <files@example.com>"
)


def test_every_missing_setting_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        hosted_options(load_settings(MINIMAL))

    assert str(raised.value) == EVERY_PROBLEM


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("POLAR_MCP_SECRET_KEY", "too-short", "POLAR_MCP_SECRET_KEY: set at least 32 random characters"),
        (
            "POLAR_ORGANIZATION",
            "9a7b4e1c-2d3f-4a5b-8c6d-7e8f9a0b1c2d",
            "POLAR_ORGANIZATION / --organization: give the slug",
        ),
        ("POLAR_ACCESS_TOKEN", "polar_cst_not_an_organization_token", "POLAR_ACCESS_TOKEN: must be an organization"),
        ("POLAR_MCP_SMTP_URL", "http://mail.example.com", "POLAR_MCP_SMTP_URL: must be smtp://"),
        ("POLAR_MCP_MAIL_FROM", "not an address", "POLAR_MCP_MAIL_FROM / --mail-from: set the From address"),
    ],
)
def test_a_wrong_setting_is_named_without_its_secret_value(
    env: dict[str, str], variable: str, value: str, named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        hosted_options(load_settings({**env, variable: value}))

    assert named in str(raised.value)
    assert "; " not in str(raised.value).removeprefix("Invalid signin configuration: ").split(named)[0]
    if variable in ("POLAR_MCP_SECRET_KEY", "POLAR_ACCESS_TOKEN", "POLAR_MCP_SMTP_URL"):
        assert value not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("POLAR_MCP_PUBLIC_URL", "http://files.example.com", "POLAR_MCP_PUBLIC_URL / --public-url: must be https"),
        ("POLAR_MCP_PUBLIC_URL", "https://example.com/files", "POLAR_MCP_PUBLIC_URL / --public-url: must be the"),
        ("POLAR_CUSTOMER_ID", "9a7b4e1c-2d3f-4a5b-8c6d-7e8f9a0b1c2d", "each buyer signs in as themselves"),
        ("POLAR_MCP_REFRESH_TTL", "a month", "POLAR_MCP_REFRESH_TTL / --refresh-ttl: must be a duration"),
        ("POLAR_MCP_TRUSTED_PROXIES", "proxy.local", "POLAR_MCP_TRUSTED_PROXIES / --trusted-proxies: must be IP"),
    ],
)
def test_settings_that_cannot_work_are_refused_when_read(
    env: dict[str, str], variable: str, value: str, named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**env, variable: value})

    assert named in str(raised.value)


def test_the_refresh_life_reads_days_hours_or_seconds(env: dict[str, str]) -> None:
    lives = [load_settings({**env, "POLAR_MCP_REFRESH_TTL": value}).refresh_ttl for value in ("30d", "12h", "7200")]

    assert lives == [30 * 86400, 12 * 3600, 7200]


SESSIONS_ONLY = "polar_oat_hosted_test_sessions_only"


def test_start_up_proves_the_services_and_names_what_fails(env: dict[str, str], store: Store) -> None:
    preflight(load_settings(env))  # everything works: no exception
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    store.add_org_token(SESSIONS_ONLY, organization_id=press.id, scopes=(CUSTOMER_SESSIONS_WRITE,))

    broken = {
        **env,
        "POLAR_MCP_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
        "POLAR_ORGANIZATION": "no-such-seller",
        "POLAR_ACCESS_TOKEN": SESSIONS_ONLY,
    }
    with pytest.raises(ConfigError) as raised:
        preflight(load_settings(broken))

    message = str(raised.value)
    assert message.startswith("Cannot start signin: POLAR_MCP_SMTP_URL: cannot send through smtp://127.0.0.1:")
    assert "POLAR_ORGANIZATION: Polar knows no organization with the slug 'no-such-seller'" in message
    assert "POLAR_ACCESS_TOKEN: the token lacks the customers:read scope" in message
    assert SESSIONS_ONLY not in message


def test_start_up_names_a_token_of_another_seller(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        preflight(load_settings({**env, "POLAR_ACCESS_TOKEN": DEMO_TEAM_ORG_TOKEN}))

    assert str(raised.value) == (
        "Cannot start signin: POLAR_ACCESS_TOKEN: the token belongs to another organization than POLAR_ORGANIZATION"
    )


def test_start_up_names_a_token_without_the_session_scope(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        preflight(load_settings({**env, "POLAR_ACCESS_TOKEN": DEMO_READONLY_ORG_TOKEN}))

    assert str(raised.value) == (
        "Cannot start signin: POLAR_ACCESS_TOKEN: the token lacks the customer_sessions:write scope"
    )


def test_the_command_line_reports_the_problems_and_exits_with_the_config_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear_polar_environment(monkeypatch)

    code = main(["--transport", "http", "--auth", "signin"])
    stdio = main(["--auth", "signin"])

    assert (code, stdio) == (ExitCode.CONFIG, ExitCode.CONFIG)
    assert capsys.readouterr().err == (
        f"polar-mcp: {EVERY_PROBLEM}\n"
        "polar-mcp: POLAR_MCP_AUTH / --auth signin serves over HTTP: add --transport http\n"
    )


def test_the_asgi_factory_builds_the_signin_app_or_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    _clear_polar_environment(monkeypatch)
    for name, value in MINIMAL.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as missing:
        create_app()
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert str(missing.value) == f"polar-mcp: {EVERY_PROBLEM}"
    assert isinstance(create_app(), SigninGate)
    assert SECRET_KEY not in str(missing.value)


def _clear_polar_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("POLAR_"):
            monkeypatch.delenv(name)
