"""The server's core opens at the first tool call that needs it (or in the quiet once the host has
listed the tools), once, and closes with the server."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import anyio
import pytest
from mcp import Client

from polar_mcp.config import ConfigError, load_settings
from polar_mcp.core import Core
from polar_mcp.failure import Failure
from polar_mcp.polar.client import HttpClientSource, PolarClient
from polar_mcp.server import CoreOnDemand, build_server
from tests.helpers.host import text_of
from tests.helpers.polar import CUSTOMER_TOKEN, FAR_FUTURE, FakePolar, downloadable

pytestmark = pytest.mark.anyio


class FakeCore(str):
    """A core that is its name, and records the preparations a warm-up runs."""

    __slots__ = ("failing_step", "prepared")

    def __new__(cls, name: str, prepared: list[str], failing_step: str | None) -> FakeCore:
        core = super().__new__(cls, name)
        core.prepared = prepared
        core.failing_step = failing_step
        return core

    def preparations(self) -> tuple[Callable[[], None], ...]:
        return tuple(functools.partial(self._step, name) for name in ("client", "result models"))

    def _step(self, name: str) -> None:
        if name == self.failing_step:
            raise RuntimeError(f"{name} could not be prepared")
        self.prepared.append(f"{self} {name}")


class Opener:
    """Counts the cores it opens and closes; its open waits for `release`, so calls can meet there."""

    def __init__(self, *, fail_first: bool = False, failing_step: str | None = None) -> None:
        self.opened = 0
        self.closed = 0
        self.fail_first = fail_first
        self.failing_step = failing_step
        self.prepared: list[str] = []
        self.release = anyio.Event()
        self.waiting = anyio.Event()

    def __call__(self) -> AbstractAsyncContextManager[Core]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Core]:
        self.opened += 1
        self.waiting.set()
        await self.release.wait()
        if self.fail_first and self.opened == 1:
            raise OSError("the stored sign-in could not be read")
        try:
            yield cast(Core, FakeCore(f"core {self.opened}", self.prepared, self.failing_step))
        finally:
            self.closed += 1


async def test_nothing_is_opened_until_a_call_asks_and_the_core_is_closed_with_the_server() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener) as cores:
        assert opener.opened == 0
        first = await cores.get()
        assert await cores.get() is first
        assert (opener.opened, opener.closed) == (1, 0)
    assert (opener.opened, opener.closed) == (1, 1)


async def test_a_server_that_no_call_needed_opens_and_closes_nothing() -> None:
    opener = Opener()
    async with CoreOnDemand(opener):
        pass
    assert (opener.opened, opener.closed) == (0, 0)


async def collect(cores: CoreOnDemand, got: list[Core]) -> None:
    """A call's share of the core: what `get` gives it."""
    got.append(await cores.get())


async def test_calls_that_arrive_together_share_one_core() -> None:
    opener = Opener()
    got: list[Core] = []
    async with CoreOnDemand(opener) as cores:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(collect, cores, got)
                await opener.waiting.wait()  # the first call is opening; the others queue behind it
                opener.release.set()
    assert opener.opened == 1
    assert got == ["core 1"] * 5
    assert opener.closed == 1


async def test_a_core_that_fails_to_open_fails_that_call_and_the_next_call_opens_it() -> None:
    opener = Opener(fail_first=True)
    opener.release.set()
    async with CoreOnDemand(opener) as cores:
        with pytest.raises(OSError, match="stored sign-in"):
            await cores.get()
        assert await cores.get() == "core 2"
    assert (opener.opened, opener.closed) == (2, 1)


async def test_once_the_server_closes_no_call_opens_a_core() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener) as cores:
        pass
    with pytest.raises(Failure, match="shutting down"):
        await cores.get()
    assert opener.opened == 0


async def test_a_core_that_cannot_open_is_a_tool_error_that_says_where_to_look_and_the_next_call_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    polar = FakePolar(valid_tokens={CUSTOMER_TOKEN}, items=[downloadable(1, "Rust Ebook.pdf", expires_at=FAR_FUTURE)])
    settings = load_settings({"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN, "POLAR_MCP_TIMEOUT": "5"})
    attempts: list[int] = []

    def make_client(http: HttpClientSource) -> PolarClient:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("Could not determine home directory.")
        return PolarClient(http, timeout=settings.timeout)

    server = build_server(settings, http_transport=polar.transport(), make_client=make_client)
    async with Client(server) as client:
        failed = await client.call_tool("list_downloadables", {})
        listed = await client.call_tool("list_downloadables", {})
    assert failed.is_error
    assert text_of(failed) == (
        "Error executing tool list_downloadables: polar-mcp could not start its connection to Polar (RuntimeError). "
        "The server's log (stderr) has the details; the next call tries again."
    )
    assert "could not open polar-mcp's core" in caplog.messages
    assert "Could not determine home directory." in caplog.text  # the traceback is the operator's
    assert not listed.is_error
    assert len(attempts) == 2


async def test_a_server_cancelled_while_it_closes_still_closes_its_core() -> None:
    opener = Opener()
    opener.release.set()
    with anyio.CancelScope() as scope:
        async with CoreOnDemand(opener) as cores:
            await cores.get()
            scope.cancel()
    assert (opener.opened, opener.closed) == (1, 1)


# The warm-up: once the host has the tools, the quiet before its first call prepares the core.


async def test_a_warm_up_opens_the_core_and_prepares_it_step_by_step_once() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener, warm_up_after=0) as cores:
        cores.warm_up_soon()
        cores.warm_up_soon()  # every tools/list asks; one warm-up is enough
        with anyio.fail_after(10):
            await cores.warmed_up.wait()
        await anyio.wait_all_tasks_blocked()
        assert opener.prepared == ["core 1 client", "core 1 result models"]
        assert await cores.get() == "core 1"
    assert (opener.opened, opener.closed) == (1, 1)


async def test_with_the_warm_up_off_the_core_waits_for_a_call() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener, warm_up_after=None) as cores:
        cores.warm_up_soon()
        await anyio.wait_all_tasks_blocked()
        assert opener.opened == 0
        assert await cores.get() == "core 1"
    assert opener.prepared == []


async def test_a_warm_up_after_a_call_opened_the_core_leaves_the_rest_to_the_calls() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener, warm_up_after=0) as cores:
        assert await cores.get() == "core 1"  # a script that called the moment tools/list was answered
        cores.warm_up_soon()
        await anyio.wait_all_tasks_blocked()
        assert opener.prepared == []
        assert not cores.warmed_up.is_set()
    assert (opener.opened, opener.closed) == (1, 1)


async def test_a_call_during_the_warm_up_shares_the_core_it_is_opening() -> None:
    opener = Opener()
    got: list[Core] = []
    async with CoreOnDemand(opener, warm_up_after=0) as cores:
        cores.warm_up_soon()
        with anyio.fail_after(10):
            await opener.waiting.wait()  # the warm-up is opening the core
            async with anyio.create_task_group() as group:
                group.start_soon(collect, cores, got)
                await anyio.wait_all_tasks_blocked()  # the call waits for that opening
                opener.release.set()
            await cores.warmed_up.wait()
    assert got == ["core 1"]
    assert (opener.opened, opener.closed) == (1, 1)


@pytest.mark.parametrize(
    ("fails_in", "next_core"),
    [
        ("opening", "core 2"),  # the core did not open: the next call opens it
        ("preparing", "core 1"),  # it opened: the next call uses it, and prepares as it goes
    ],
)
async def test_a_warm_up_that_fails_leaves_the_work_and_the_error_to_the_next_call(
    fails_in: str, next_core: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="polar_mcp.server")
    opener = Opener(fail_first=True) if fails_in == "opening" else Opener(failing_step="client")
    opener.release.set()
    async with CoreOnDemand(opener, warm_up_after=0) as cores:
        cores.warm_up_soon()
        with anyio.fail_after(10):
            while "warm-up stopped: the first call prepares what is left" not in caplog.messages:
                await anyio.wait_all_tasks_blocked()
        assert not cores.warmed_up.is_set()
        assert opener.prepared == []
        assert await cores.get() == next_core
    assert opener.closed == opener.opened - (1 if opener.fail_first else 0)


async def test_a_closing_server_stops_its_warm_up_while_it_waits_or_while_it_opens() -> None:
    waiting = Opener()
    with anyio.fail_after(10):
        async with CoreOnDemand(waiting, warm_up_after=3600) as cores:
            cores.warm_up_soon()
    assert waiting.opened == 0

    opening = Opener()  # never released: the opening is cancelled
    with anyio.fail_after(10):
        async with CoreOnDemand(opening, warm_up_after=0) as cores:
            cores.warm_up_soon()
            await opening.waiting.wait()
    assert (opening.opened, opening.closed) == (1, 0)
    assert opening.prepared == []


@pytest.mark.parametrize("when", ["waiting", "opening", "prepared"])
async def test_a_server_cancelled_during_or_after_its_warm_up_closes_what_it_opened(when: str) -> None:
    opener = Opener()
    if when != "opening":
        opener.release.set()  # else the opening never finishes: the cancellation ends it
    with anyio.fail_after(10), anyio.CancelScope() as scope:
        async with CoreOnDemand(opener, warm_up_after=3600 if when == "waiting" else 0) as cores:
            cores.warm_up_soon()
            if when == "opening":
                await opener.waiting.wait()
            if when == "prepared":
                await cores.warmed_up.wait()
            scope.cancel()
    assert (opener.opened, opener.closed) == {"waiting": (0, 0), "opening": (1, 0), "prepared": (1, 1)}[when]


@pytest.mark.parametrize(("warm_up", "prepared_before_the_call"), [("0", True), ("off", False)])
async def test_once_the_tools_are_listed_the_server_prepares_its_core_without_sending_anything(
    warm_up: str, prepared_before_the_call: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="polar_mcp.server")
    polar = FakePolar(valid_tokens={CUSTOMER_TOKEN}, items=[downloadable(1, "Rust Ebook.pdf", expires_at=FAR_FUTURE)])
    settings = load_settings({"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN, "POLAR_MCP_WARM_UP": warm_up})
    made: list[PolarClient] = []

    def make_client(http: HttpClientSource) -> PolarClient:
        made.append(PolarClient(http, timeout=5))
        return made[-1]

    server = build_server(settings, http_transport=polar.transport(), make_client=make_client)
    async with Client(server) as client:
        await anyio.wait_all_tasks_blocked()
        assert made == []  # the handshake alone starts nothing
        await client.list_tools()
        await anyio.wait_all_tasks_blocked()  # a warm-up after 0 s runs to its end meanwhile
        warmed = "warmed up: the first call finds the core open and prepared" in caplog.messages
        assert (len(made), warmed) == ((1, True) if prepared_before_the_call else (0, False))
        assert polar.requests == []
        listed = await client.call_tool("list_downloadables", {})
    assert not listed.is_error
    assert "Rust Ebook.pdf" in text_of(listed)
    assert len(made) == 1


def test_the_preparations_build_every_model_a_first_call_uses_and_load_the_http_stack() -> None:
    # A fresh interpreter: in this one, other tests have built the models already.
    script = """
import json, sys
import httpx2
from polar_mcp import present
from polar_mcp.polar import models
from polar_mcp.polar.client import PolarClient

sent = []

async def record(request):
    sent.append(request)

client = PolarClient(lambda: httpx2.AsyncClient(event_hooks={"request": [record]}), timeout=5)
every = [*present._Out.__subclasses__(), models.DownloadablesPage, models.BenefitGrantsPage]
built = lambda: [m.__pydantic_complete__ for m in every]
before = (built(), "httpcore2" in sys.modules)
client.prepare()
present.prepare()
print(json.dumps({"before": before, "after": (built(), "httpcore2" in sys.modules), "sent": len(sent)}))
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(completed.stdout)
    models_before, stack_before = seen["before"]
    models_after, stack_after = seen["after"]
    assert len(models_after) >= 12
    assert not any(models_before)
    assert not stack_before
    assert all(models_after)
    assert stack_after
    assert seen["sent"] == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("", 0.1), ("0.5", 0.5), ("0", 0.0), ("off", None), (" Off ", None), ("no", None), ("on", 0.1), ("YES", 0.1)],
)
def test_the_warm_up_setting_is_seconds_or_off(text: str, seconds: float | None) -> None:
    assert load_settings({"POLAR_MCP_WARM_UP": text}).warm_up == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "Input should be a valid number, unable to parse string as a number (got 'soon')"),
        ("-1", "Input should be greater than or equal to 0 (got '-1')"),
        ("3600", "Input should be less than or equal to 60 (got '3600')"),
    ],
)
def test_a_warm_up_setting_that_is_not_seconds_names_the_setting(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"POLAR_MCP_WARM_UP": text})
    assert str(raised.value) == f"Invalid configuration: POLAR_MCP_WARM_UP / --warm-up: {message}"
