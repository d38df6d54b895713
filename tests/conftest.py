"""Suite-wide fixtures: the anyio backend, a guard that fails any connection off loopback, and a time
limit on every test."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Generator, Iterator
from typing import Any

import pytest

# The slowest test takes about 10 s on two cores. A test still running after this long is stuck: its
# process says which test it is, prints every thread's stack and exits, so the run names the test
# (pytest-xdist reports that the worker crashed while running it, and goes on with a new worker)
# instead of waiting for CI's limit.
TEST_TIME_LIMIT = 180.0


def _stuck(item: pytest.Item) -> None:
    nodeid = item.nodeid
    # What follows goes to the terminal, not into the test's captured output.
    suspend = getattr(item.config.pluginmanager.getplugin("capturemanager"), "suspend_global_capture", None)
    if suspend is not None:
        suspend()
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"\n{nodeid} is still running after {TEST_TIME_LIMIT:.0f} s: the stacks of its threads follow\n")
    stream.flush()
    faulthandler.dump_traceback(file=stream, all_threads=True)
    # An async test waits in its event loop's select(): where each of its tasks waits says more.
    for loop in (o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()):
        for task in list(asyncio.all_tasks(loop)):
            stream.write(f"\ntask {task.get_name()}, awaiting:\n")
            awaited: Any = task.get_coro()
            while awaited is not None and (
                frame := getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            ):
                stream.write(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}\n")
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    stream.flush()
    os._exit(70)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    watchdog = threading.Timer(TEST_TIME_LIMIT, _stuck, args=(item,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return (yield)
    finally:
        watchdog.cancel()


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX paths stay on this machine
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    """Fail loudly if any code under test connects anywhere but loopback."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            raise AssertionError(f"test tried to connect off loopback: {address!r}")
        return real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_loopback(address):
            raise AssertionError(f"test tried to connect off loopback: {address!r}")
        return real_connect_ex(self, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
