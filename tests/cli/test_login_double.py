"""`polar-mcp login` against the double over loopback: Polar's own answers, codes read from its outbox.

Each test has a double of its own: the sign-in rate limit counts per address, and these tests spend it.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EMAIL,
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_NO_MEMBERS_CUSTOMER_EMAIL,
    DEMO_NO_MEMBERS_ORGANIZATION_SLUG,
    DEMO_ORG_TOKEN,
    DEMO_ORGANIZATION_SLUG,
    demo_store,
)
from tests.helpers.cli import Cli

CODE_SENT = "polar-mcp: If a•••@example.com bought from Ferris Press, a code is on its way (valid 30 minutes).\n"


class Piped(io.StringIO):
    """A pipe on standard input whose line is produced when read (the code, from the outbox)."""

    def __init__(self, line: Callable[[], str]) -> None:
        super().__init__()
        self._line = line

    def isatty(self) -> bool:
        return False

    def readline(self, size: int | None = -1) -> str:
        return self._line() + "\n"


@pytest.fixture
def polar(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningDouble]:
    with start_double(demo_store()) as running:
        monkeypatch.setenv("POLAR_API_URL", running.base_url)
        yield running


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch, polar: RunningDouble) -> Callable[[str], None]:
    """Pipe the latest code e-mailed to an address into the next command (or a fixed text)."""

    def to(address: str) -> None:
        monkeypatch.setattr(sys, "stdin", Piped(lambda: polar.store.last_code(address)))

    return to


def test_a_buyer_signs_in_from_a_script_lists_and_logs_out(
    cli: Cli, polar: RunningDouble, pipe: Callable[[str], None], home: Path
) -> None:
    pipe(DEMO_CUSTOMER_EMAIL)
    run = cli("login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL)
    assert run.code == 0, run.err
    assert run.messages == CODE_SENT
    assert run.out.startswith("Signed in at Ferris Press as Ada Lovelace (a•••@example.com) until ")
    stored = json.loads((home / ".config" / "polar-mcp" / "signin.json").read_text())
    assert stored["sessions"][0]["token"].startswith("polar_mst_")  # Ferris Press has members: a member session

    listing = cli("list", "--all", "--json")
    assert listing.code == 0
    assert "rust-in-practice.pdf" in {item["name"] for item in json.loads(listing.out)["items"]}
    assert cli("logout", DEMO_ORGANIZATION_SLUG).out == (
        "Signed out of Ferris Press (a•••@example.com): the stored session is forgotten.\n"
    )
    assert cli("list").code == 2


def test_an_organization_without_members_gives_a_customer_session(
    cli: Cli, polar: RunningDouble, pipe: Callable[[str], None], home: Path
) -> None:
    pipe(DEMO_NO_MEMBERS_CUSTOMER_EMAIL)
    run = cli("login", DEMO_NO_MEMBERS_ORGANIZATION_SLUG, "--email", DEMO_NO_MEMBERS_CUSTOMER_EMAIL)
    assert run.code == 0, run.err
    stored = json.loads((home / ".config" / "polar-mcp" / "signin.json").read_text())
    assert stored["sessions"][0]["token"].startswith("polar_cst_")
    assert cli("doctor").out.splitlines()[2] == (
        "Token:     stored sign-in at Quiet Quill for m•••@example.com (polar_cst_…)"
    )


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["login", "no-such-shop", "--email", DEMO_CUSTOMER_EMAIL],
            4,
            "Polar knows no seller with the slug 'no-such-shop'. SELLER is the slug of the seller's portal address "
            "(https://polar.sh/<slug>/portal).",
        ),
        (
            ["login", DEMO_ORGANIZATION_SLUG, "--email", "ada@-bad-.example"],
            2,
            "Polar refused a•••@-bad-.example as an e-mail address. Check --email (or POLAR_CUSTOMER_EMAIL).",
        ),
    ],
)
def test_polar_s_refusals_of_a_seller_or_an_address_have_their_exit_codes(
    cli: Cli, polar: RunningDouble, argv: list[str], code: int, message: str
) -> None:
    run = cli(*argv)
    assert (run.code, run.out, run.messages) == (code, "", f"polar-mcp: {message}\n")
    assert polar.store.outbox == []


def test_a_wrong_code_and_a_code_used_twice_exit_3(
    cli: Cli, polar: RunningDouble, pipe: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = (
        "polar-mcp: Polar did not accept the code: it is wrong, already used, or expired (codes live 30 minutes). "
        "Run polar-mcp login again for a new code.\n"
    )
    monkeypatch.setattr(sys, "stdin", Piped(lambda: "AAAAAA"))
    run = cli("login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL)
    assert (run.code, run.messages) == (3, CODE_SENT + wrong)
    # The code already sent is still good: the next login (within the minute) asks for it instead.
    pipe(DEMO_CUSTOMER_EMAIL)
    assert cli("login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL).code == 0
    used = polar.store.last_code(DEMO_CUSTOMER_EMAIL)
    monkeypatch.setattr(sys, "stdin", Piped(lambda: used))
    again = cli("login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL)
    assert again.code == 5  # within the minute: no new code is asked for, and none is pending
    assert again.messages.startswith("polar-mcp: A code for a•••@example.com at Ferris Press was asked for less")


def test_polar_s_block_exits_5_after_one_request(cli: Cli, polar: RunningDouble) -> None:
    for _ in range(7):
        polar.store.hit_signin_limit("address:127.0.0.1")
    before = len(polar.store.requests)
    run = cli("login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL)
    assert (run.code, run.messages) == (
        5,
        "polar-mcp: Polar's limit on sign-in requests was reached (6 a minute, 12 an hour per address); Polar now "
        "refuses this address on its whole API for about 15 minutes. Run polar-mcp login again after that, not "
        "sooner.\n",
    )
    assert len(polar.store.requests) - before == 1


def test_minting_comes_before_the_stored_sign_in_and_doctor_shows_the_order(
    cli: Cli, polar: RunningDouble, pipe: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe(DEMO_CUSTOMER_EMAIL)
    assert cli("login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL).code == 0
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", DEMO_ORG_TOKEN)
    monkeypatch.setenv("POLAR_EXTERNAL_CUSTOMER_ID", DEMO_CUSTOMER_EXTERNAL_ID)
    run = cli("doctor")
    assert run.code == 0, run.out
    lines = run.out.splitlines()
    assert lines[3] == (
        "Order:     POLAR_CUSTOMER_SESSION (not set) > POLAR_ACCESS_TOKEN (in use) > stored sign-in (set, not used)"
    )
    assert lines[4].startswith("Signed in: Ada Lovelace (a•••@example.com) at Ferris Press (ferris-press) until ")


def test_nothing_secret_is_printed_or_logged_at_debug(
    cli: Cli, polar: RunningDouble, pipe: Callable[[str], None], home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipe(DEMO_CUSTOMER_EMAIL)
    runs = [cli("--log-level", "DEBUG", "login", DEMO_ORGANIZATION_SLUG, "--email", DEMO_CUSTOMER_EMAIL)]
    token = json.loads((home / ".config" / "polar-mcp" / "signin.json").read_text())["sessions"][0]["token"]
    runs += [cli("--log-level", "DEBUG", command) for command in ("list", "doctor", "logout")]
    assert [run.code for run in runs] == [0, 0, 0, 0]
    everything = "".join(run.out + run.err for run in runs) + "\n".join(r.getMessage() for r in caplog.records)
    assert "DEBUG" in everything
    assert polar.store.outbox[0].code not in everything
    assert token not in everything
    assert DEMO_CUSTOMER_EMAIL not in "".join(run.out + run.messages for run in runs)
