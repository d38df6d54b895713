"""`polar-mcp login` / `logout` and `doctor`'s sign-in lines, against the sign-in fake over loopback.

The code is read from standard input when it is not a terminal, so a script can pipe it; here the
input reads the fake's outbox at the moment the CLI asks, as a person would read their e-mail.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polar_mcp.config import load_settings
from polar_mcp.signin_store import SignInStore
from tests.helpers.cli import Cli
from tests.helpers.loopback import serve_asgi
from tests.helpers.polar import CUSTOMER_TOKEN
from tests.helpers.signin import ADA, TEAM_CUSTOMERS, TEAM_EMAIL, SignInPolar, asgi, item

UNTIL = re.compile(r"until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (59|60) min\)")
CODE_SENT = "polar-mcp: If a•••@example.com bought from Ferris Press, a code is on its way (valid 30 minutes).\n"

Line = str | Callable[[], str]


class Typed(io.StringIO):
    """Standard input whose lines are produced when read (a callable reads the outbox then)."""

    def __init__(self, lines: list[Line], *, terminal: bool) -> None:
        super().__init__()
        self._lines = list(lines)
        self._terminal = terminal

    def isatty(self) -> bool:
        return self._terminal

    def readline(self, size: int | None = -1) -> str:
        if not self._lines:
            return ""
        line = self._lines.pop(0)
        return (line() if callable(line) else line) + "\n"


@pytest.fixture
def polar() -> SignInPolar:
    return SignInPolar(items=[item(1, "Rust Ebook.pdf")])


@pytest.fixture
def api(polar: SignInPolar, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serve_asgi(asgi(polar)) as base_url:
        monkeypatch.setenv("POLAR_API_URL", base_url)
        yield base_url


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def type_in(*lines: Line, terminal: bool = False) -> None:
        monkeypatch.setattr(sys, "stdin", Typed(list(lines), terminal=terminal))

    return type_in


def _signed_in_line(out: str) -> str:
    return UNTIL.sub("until T (in 60 min)", out)


def test_a_piped_code_signs_in_then_list_works_and_logout_forgets_it(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None], home: Path
) -> None:
    stdin(polar.last_code)
    run = cli("login", "ferris-press", "--email", ADA)
    assert (run.code, _signed_in_line(run.out), run.messages) == (
        0,
        "Signed in at Ferris Press as Ada Lovelace (a•••@example.com) until T (in 60 min).\n",
        CODE_SENT,
    )
    listing = cli("list", "--json")
    assert listing.code == 0
    assert [entry["name"] for entry in json.loads(listing.out)["items"]] == ["Rust Ebook.pdf"]
    stored = home / ".config" / "polar-mcp" / "signin.json"
    assert stored.stat().st_mode & 0o777 == 0o600

    out = cli("logout")
    assert (out.code, out.out) == (
        0,
        "Signed out of Ferris Press (a•••@example.com): the stored session is forgotten.\n",
    )
    after = cli("list")
    assert after.code == 2
    assert after.messages.startswith("polar-mcp: Not signed in. Run: polar-mcp login SELLER --email EMAIL")
    assert cli("logout").out == "Not signed in.\n"


def test_seller_and_e_mail_are_asked_for_on_a_terminal_when_nothing_gives_them(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None]
) -> None:
    stdin("ferris-press", ADA, polar.last_code, terminal=True)
    run = cli("login")
    assert run.code == 0
    assert run.messages == (
        "Seller (the slug of its portal address, https://polar.sh/<slug>/portal): E-mail you bought with: "
        + CODE_SENT
        + "Code from the e-mail: "
    )


def test_the_settings_give_seller_and_e_mail_and_the_config_folder_can_be_chosen(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None], tmp_path: Path
) -> None:
    stdin(polar.last_code)
    run = cli("login", "--organization", "ferris-press", "--config-dir", str(tmp_path / "cfg"), "--email", ADA)
    assert run.code == 0
    assert (tmp_path / "cfg" / "signin.json").exists()


def test_several_customers_are_a_numbered_choice_on_a_terminal(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None]
) -> None:
    stdin("2", polar.last_code, terminal=True)
    run = cli("login", "ferris-press", "--email", TEAM_EMAIL)
    assert run.code == 0, run.err
    assert run.messages == (
        "polar-mcp: g•••@example.com belongs to several customers of Ferris Press:\n"
        f"polar-mcp:   1. Grace Hopper ({TEAM_CUSTOMERS[0]['id']})\n"
        f"polar-mcp:   2. Hopper Labs ({TEAM_CUSTOMERS[1]['id']})\n"
        "Sign in as which one (1-2)? "
        "polar-mcp: If g•••@example.com bought from Ferris Press, a code is on its way (valid 30 minutes).\n"
        "Code from the e-mail: "
    )
    assert polar.outbox[-1].customer_id == TEAM_CUSTOMERS[1]["id"]


def test_several_customers_in_a_script_list_the_choices_for_select_customer(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None]
) -> None:
    stdin("unused")
    refused = cli("login", "ferris-press", "--email", TEAM_EMAIL)
    assert (refused.code, refused.messages) == (
        2,
        "polar-mcp: g•••@example.com belongs to several customers of Ferris Press; choose one with "
        "--select-customer:\n"
        f"  {TEAM_CUSTOMERS[0]['id']}  Grace Hopper\n"
        f"  {TEAM_CUSTOMERS[1]['id']}  Hopper Labs\n",
    )
    stdin(polar.last_code)
    chosen = cli("login", "ferris-press", "--email", TEAM_EMAIL, "--select-customer", TEAM_CUSTOMERS[0]["id"])
    assert chosen.code == 0, chosen.err
    assert polar.outbox[-1].customer_id == TEAM_CUSTOMERS[0]["id"]


@pytest.mark.parametrize(
    ("argv", "lines", "code", "message"),
    [
        (
            ["login", "ferris-pres", "--email", ADA],
            [],
            4,
            "Polar knows no seller with the slug 'ferris-pres'. SELLER is the slug of the seller's portal address "
            "(https://polar.sh/<slug>/portal).",
        ),
        (
            ["login", "--email", ADA],
            [],
            2,
            "Which seller? Give SELLER, the slug of the seller's portal address (https://polar.sh/<slug>/portal), "
            "or set POLAR_ORGANIZATION.",
        ),
        (
            ["login", "ferris-press"],
            [],
            2,
            "Which e-mail? Give --email with the address you bought with, or set POLAR_CUSTOMER_EMAIL.",
        ),
        (
            ["login", "ferris-press", "--email", ADA],
            ["WRONG9"],
            3,
            "Polar did not accept the code: it is wrong, already used, or expired (codes live 30 minutes). Run "
            "polar-mcp login again for a new code.",
        ),
        (
            ["login", "ferris-press", "--email", ADA],
            [],
            2,
            "No code given; run polar-mcp login again when you have it (the code stays valid 30 minutes).",
        ),
    ],
)
def test_each_sign_in_error_has_its_message_and_exit_code(
    cli: Cli,
    api: str,
    stdin: Callable[..., None],
    argv: list[str],
    lines: list[str],
    code: int,
    message: str,
) -> None:
    stdin(*lines)
    run = cli(*argv)
    assert (run.code, run.out) == (code, "")
    assert run.messages.removeprefix(CODE_SENT) == f"polar-mcp: {message}\n"


def test_an_invalid_e_mail_flag_is_a_configuration_error_before_anything_is_sent(
    cli: Cli, api: str, polar: SignInPolar
) -> None:
    run = cli("login", "ferris-press", "--email", "ada-at-example")
    assert run.code == 2
    assert run.messages.startswith("polar-mcp: Invalid configuration: POLAR_CUSTOMER_EMAIL / --email: must be")
    assert polar.requests == []


def test_polar_s_rate_limit_exits_5_saying_how_long_and_why(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None]
) -> None:
    polar.rate_limited = True
    run = cli("login", "ferris-press", "--email", ADA)
    assert (run.code, run.messages) == (
        5,
        "polar-mcp: Polar's limit on sign-in requests was reached (6 a minute, 12 an hour per address); Polar now "
        "refuses this address on its whole API for about 15 minutes. Run polar-mcp login again after that, not "
        "sooner.\n",
    )
    assert len(polar.sign_in_calls()) == 1


def test_a_second_login_within_the_minute_asks_for_the_code_already_sent(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None]
) -> None:
    stdin("")
    assert cli("login", "ferris-press", "--email", ADA).code == 2  # no code typed the first time
    stdin(polar.last_code)
    run = cli("login", "ferris-press", "--email", ADA)
    assert run.code == 0
    assert re.sub(r"Wait \d\d s", "Wait N s", run.messages) == (
        "polar-mcp: A code for a•••@example.com at Ferris Press was asked for less than a minute ago: polar-mcp "
        "allows one code request a minute per seller and e-mail, so that Polar never blocks this address. Wait "
        "N s. Enter the code from the e-mail already sent instead.\n"
    )
    assert len(polar.outbox) == 1


def test_doctor_shows_who_is_signed_in_where_until_when_and_the_order(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(polar.last_code)
    assert cli("login", "ferris-press", "--email", ADA).code == 0
    run = cli("doctor")
    assert run.code == 0
    lines = [_signed_in_line(line) for line in run.out.splitlines()]
    assert lines[2:6] == [
        "Token:     stored sign-in at Ferris Press for a•••@example.com (polar_cst_…)",
        "Order:     POLAR_CUSTOMER_SESSION (not set) > POLAR_ACCESS_TOKEN (not set) > stored sign-in (in use)",
        "Signed in: Ada Lovelace (a•••@example.com) at Ferris Press (ferris-press) until T (in 60 min)",
        "Reachable: yes",
    ]
    assert lines[6].startswith("Session:   valid, expires ")

    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", CUSTOMER_TOKEN)
    both = cli("doctor")
    assert both.out.splitlines()[3] == (
        "Order:     POLAR_CUSTOMER_SESSION (in use) > POLAR_ACCESS_TOKEN (not set) > stored sign-in (set, not used)"
    )
    assert cli("list").code == 0
    assert polar.list_calls()[-1].headers["authorization"] == f"Bearer {CUSTOMER_TOKEN}"


def test_an_expired_sign_in_says_run_login_and_doctor_shows_it(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None], home: Path
) -> None:
    stdin(polar.last_code)
    assert cli("login", "ferris-press", "--email", ADA).code == 0
    store = SignInStore(home / ".config" / "polar-mcp")
    settings = load_settings({"POLAR_API_URL": api})
    (signed_in,) = store.sessions(settings.base_url)
    store.save(signed_in._replace(expires_at=signed_in.signed_in_at))
    run = cli("list")
    assert (run.code, run.messages) == (
        3,
        "polar-mcp: The sign-in at Ferris Press for a•••@example.com has expired (sessions live one hour). Run: "
        "polar-mcp login\n",
    )
    doctor = cli("doctor")
    assert doctor.code == 3
    assert "Signed in: Ada Lovelace (a•••@example.com) at Ferris Press (ferris-press), expired " in doctor.out
    # `login` with no arguments signs in again at the same seller, with the same e-mail (once the
    # minute since the last code request has passed).
    stored = json.loads(store.path.read_text())
    stored["requests"] = [{**entry, "at": entry["at"] - 120} for entry in stored["requests"]]
    store.path.write_text(json.dumps(stored))
    stdin(polar.last_code)
    again = cli("login")
    assert (again.code, again.messages) == (0, CODE_SENT)
    assert cli("list").code == 0


def test_neither_code_nor_token_is_printed_or_logged_even_at_debug(
    cli: Cli, api: str, polar: SignInPolar, stdin: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stdin(polar.last_code)
    runs = [cli("--log-level", "DEBUG", "login", "ferris-press", "--email", ADA)]
    runs += [cli("--log-level", "DEBUG", command) for command in ("list", "doctor", "logout")]
    assert [run.code for run in runs] == [0, 0, 0, 0]
    (token,) = polar.sessions
    everything = "".join(run.out + run.err for run in runs) + "\n".join(r.getMessage() for r in caplog.records)
    assert "DEBUG" in everything
    assert polar.outbox[0].code not in everything
    assert token not in everything
    assert token.removeprefix("polar_cst_")[:10] not in everything
    assert ADA not in "".join(run.out + run.messages for run in runs)
