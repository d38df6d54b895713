"""The stored sign-in file: private, replaced atomically, per API base URL, and the code-request limiter."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from polar_mcp.signin_store import (
    CodeRequestLimitedError,
    InsecureStoreError,
    PendingCode,
    Seller,
    SignedIn,
    SignInRequiredError,
    SignInStore,
    StoredSession,
    UnreadableStoreError,
    default_config_dir,
)

pytestmark = pytest.mark.anyio

PRODUCTION = "https://api.polar.sh"
SANDBOX = "https://sandbox-api.polar.sh"
FERRIS = Seller("0a0a0a0a-0000-4000-8000-00000000000a", "ferris-press", "Ferris Press")
OTHER = Seller("0b0b0b0b-0000-4000-8000-00000000000b", "other-shop", "Other Shop")
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> SignInStore:
    return SignInStore(tmp_path / "polar-mcp", clock=clock)


def signed_in(seller: Seller = FERRIS, *, api: str = PRODUCTION, token: str = "polar_cst_one", at: int = 0) -> SignedIn:
    moment = START + timedelta(minutes=at)
    return SignedIn(api, seller, "ada@example.com", SecretStr(token), moment + timedelta(hours=1), moment, "Ada")


def test_the_default_folder_follows_xdg_config_home_else_dot_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ada")
    assert default_config_dir({"XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/polar-mcp")
    assert default_config_dir({}) == Path("/home/ada/.config/polar-mcp")


def test_the_file_and_its_folder_are_the_user_s_alone(store: SignInStore) -> None:
    store.save(signed_in())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.sessions(PRODUCTION) == [signed_in()]


def test_a_file_others_can_read_is_refused_with_the_chmod_that_fixes_it(store: SignInStore) -> None:
    store.save(signed_in())
    os.chmod(store.path, 0o640)
    with pytest.raises(InsecureStoreError) as refused:
        store.sessions(PRODUCTION)
    assert refused.value.message == (
        f"{store.path} can be read by other users and holds sign-in sessions; polar-mcp refuses it. "
        f"Fix it with: chmod 600 {store.path}"
    )
    os.chmod(store.path, 0o600)
    assert store.sessions(PRODUCTION) == [signed_in()]


def test_every_change_replaces_the_whole_file_and_a_failed_write_leaves_the_old_one_intact(
    store: SignInStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(signed_in())
    before = store.path.stat().st_ino
    store.save(signed_in(OTHER, token="polar_cst_two"))
    assert store.path.stat().st_ino != before  # a new file put in place, never rewritten in place
    content = store.path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save(signed_in(token="polar_cst_three"))
    assert store.path.read_bytes() == content
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["signin.json"]


def test_a_file_polar_mcp_did_not_write_is_refused_by_name(store: SignInStore) -> None:
    store.path.parent.mkdir(mode=0o700)
    store.path.write_text("{not json")
    os.chmod(store.path, 0o600)
    with pytest.raises(UnreadableStoreError) as refused:
        store.sessions(PRODUCTION)
    assert refused.value.message == (
        f"{store.path} is not a sign-in file polar-mcp can read; delete it and sign in again."
    )


def test_sessions_belong_to_the_base_url_they_came_from(store: SignInStore) -> None:
    store.save(signed_in(api=SANDBOX, token="polar_cst_sandbox"))
    assert store.sessions(PRODUCTION) == []
    assert store.active(PRODUCTION, None) is None
    assert store.active(SANDBOX, None) == signed_in(api=SANDBOX, token="polar_cst_sandbox")


def test_the_active_seller_is_the_one_named_else_the_last_signed_in(store: SignInStore) -> None:
    store.save(signed_in(FERRIS, token="polar_cst_ferris", at=0))
    store.save(signed_in(OTHER, token="polar_cst_other", at=5))
    assert store.active(PRODUCTION, None) == signed_in(OTHER, token="polar_cst_other", at=5)
    assert store.active(PRODUCTION, "ferris-press") == signed_in(FERRIS, token="polar_cst_ferris", at=0)
    assert store.active(PRODUCTION, FERRIS.id) == signed_in(FERRIS, token="polar_cst_ferris", at=0)
    assert store.forget(PRODUCTION, "other-shop") == signed_in(OTHER, token="polar_cst_other", at=5)
    assert store.active(PRODUCTION, None) == signed_in(FERRIS, token="polar_cst_ferris", at=0)


def test_the_limiter_allows_one_request_a_minute_and_five_an_hour_and_says_how_long_to_wait(
    store: SignInStore, clock: Clock
) -> None:
    def ask() -> None:
        store.check_limit(PRODUCTION, FERRIS, "Ada@Example.com")
        store.code_requested(PendingCode(PRODUCTION, FERRIS, "ada@example.com", None, store.now()))

    ask()
    clock.now += 59
    with pytest.raises(CodeRequestLimitedError) as minute:
        ask()
    assert (minute.value.per, minute.value.wait) == ("minute", 1)
    for _ in range(4):
        clock.now += 60
        ask()
    clock.now += 60
    with pytest.raises(CodeRequestLimitedError) as hour:
        ask()
    assert (hour.value.per, round(hour.value.wait)) == ("hour", 3600 - 59 - 5 * 60)
    # Another store on the same folder (a restart) sees the same history.
    again = SignInStore(store.path.parent, clock=clock)
    with pytest.raises(CodeRequestLimitedError):
        again.check_limit(PRODUCTION, FERRIS, "ada@example.com")
    again.check_limit(PRODUCTION, OTHER, "ada@example.com")
    again.check_limit(SANDBOX, FERRIS, "ada@example.com")
    clock.now += 3600
    again.check_limit(PRODUCTION, FERRIS, "ada@example.com")


def test_a_pending_code_is_found_for_thirty_minutes_then_forgotten(store: SignInStore, clock: Clock) -> None:
    pending = PendingCode(PRODUCTION, FERRIS, "ada@example.com", None, store.now())
    store.code_requested(pending)
    assert store.pending(PRODUCTION) == pending
    assert store.pending(PRODUCTION, "ferris-press", "ADA@example.com") == pending
    assert store.pending(PRODUCTION, "other-shop") is None
    assert store.pending(SANDBOX) is None
    clock.now += 30 * 60
    assert store.pending(PRODUCTION) is None


def test_the_file_holds_what_it_says_and_nothing_else(store: SignInStore) -> None:
    store.save(signed_in())
    assert json.loads(store.path.read_text()) == {
        "version": 1,
        "sessions": [
            {
                "api": PRODUCTION,
                "seller_id": FERRIS.id,
                "seller_slug": "ferris-press",
                "seller_name": "Ferris Press",
                "email": "ada@example.com",
                "token": "polar_cst_one",
                "expires_at": "2026-11-30T10:00:00+00:00",
                "signed_in_at": "2026-11-30T09:00:00+00:00",
                "name": "Ada",
                "kind": None,
                "role": None,
            }
        ],
        "pending": [],
    }


async def test_the_stored_session_reads_a_sign_in_made_by_another_process(store: SignInStore, clock: Clock) -> None:
    session = StoredSession(store, PRODUCTION, None)
    with pytest.raises(SignInRequiredError) as none:
        await session.token()
    assert none.value.reason == "none"
    # `polar-mcp login` in a terminal writes the file while the server runs.
    SignInStore(store.path.parent, clock=clock).save(signed_in())
    assert (await session.token()).get_secret_value() == "polar_cst_one"
    clock.now += 3600
    with pytest.raises(SignInRequiredError) as expired:
        await session.token()
    assert (expired.value.reason, expired.value.seller, expired.value.email) == (
        "expired",
        "Ferris Press",
        "a•••@example.com",
    )
    # After Polar rejects a token, a newer one in the file is used; the same one again is refused.
    store.save(signed_in(token="polar_cst_two", at=60))
    renewed = await session.renew(SecretStr("polar_cst_one"))
    assert renewed is not None
    assert renewed.get_secret_value() == "polar_cst_two"
    with pytest.raises(SignInRequiredError) as rejected:
        await session.renew(SecretStr("polar_cst_two"))
    assert rejected.value.reason == "rejected"
