"""Stopping a stdio server mid-download: it exits promptly and cleanly, leaving no partial file and no process.

The server is `python -m polar_mcp`, spoken to over a raw JSON-RPC pipe. The download is held mid-flight
deterministically: the double streams the first megabyte of the file, then waits on a gate the test
opens only at teardown. The test reads progress notifications until the first one arrives (by then
the `.part` file holds data), then stops the server by SIGTERM, SIGINT or EOF on stdin.

Nothing sleeps for a fixed time: every wait is a bounded read of the pipe or a bounded process wait,
and a watchdog kills a server that never exits (the test then fails).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import pytest
from mcp import Client

from polar_mcp.config import load_settings
from polar_mcp.double.blobs import Blob, Digests
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME, DownloadRecord
from polar_mcp.server import build_server
from tests.helpers.cli import subprocess_env
from tests.helpers.demo import ada_id

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and /proc")

HELD_FILE = "01-futures-and-wakers.mp4"
HELD_AFTER_BLOCKS = 16
"""The double sends this many 64 KiB blocks (1 MiB, several progress steps) before holding the transfer."""
READ_TIMEOUT = 20.0
"""Longest wait for one expected line from the server."""
STOP_TIMEOUT = 3.0
"""A stopped server must exit within this many seconds."""
WATCHDOG_SECONDS = 45.0
GATE_TIMEOUT = 60.0
"""The double's streaming thread never waits longer than this, even if a test forgets to open the gate."""


@dataclass(frozen=True)
class _HeldBlob(Blob):
    """A blob whose stream stops after `held_after` blocks until `gate` is set; checksums as the plain blob's."""

    gate: threading.Event = field(default_factory=threading.Event, compare=False)
    held_after: int = HELD_AFTER_BLOCKS
    holding: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set once the first blocks are sent and the rest is held."""

    def blocks(self) -> Iterator[bytes]:
        for index, block in enumerate(super().blocks()):
            if index == self.held_after:
                self.holding.set()
                self.gate.wait(GATE_TIMEOUT)
            yield block

    @property
    def digests(self) -> Digests:
        return Blob(self.size, self.seed, self.header, self.text).digests


@pytest.fixture
def held(store: Store) -> Iterator[threading.Event]:
    """The big demo video, streamed up to its first megabyte only until the returned gate is set."""
    file = next(f for f in store.files.values() if f.name == HELD_FILE)
    original = file.blob
    gate = threading.Event()
    file.blob = _HeldBlob(original.size, original.seed, original.header, original.text, gate=gate)
    try:
        yield gate
    finally:
        gate.set()
        file.blob = original


class _RawServer:
    """`python -m polar_mcp` on a pipe: JSON-RPC lines in, stdout lines read by a thread into a queue."""

    def __init__(self, env: dict[str, str], stderr_path: Path) -> None:
        self._stderr = stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "polar_mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.stdout: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="stdout-reader", daemon=True)
        self._reader.start()
        self.killed_by_watchdog = False
        self._watchdog = threading.Timer(WATCHDOG_SECONDS, self._kill_stuck)
        self._watchdog.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _kill_stuck(self) -> None:
        self.killed_by_watchdog = True
        self.process.kill()

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def read_until(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = READ_TIMEOUT) -> dict[str, Any]:
        """The first stdout message `wanted` accepts; every line before it must be JSON-RPC too."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no expected message within {timeout} s; saw {self.stdout}"
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"the server closed stdout early; saw {self.stdout}"
            message: dict[str, Any] = json.loads(line)
            assert message.get("jsonrpc") == "2.0", line
            self.stdout.append(message)
            if wanted(message):
                return message

    def wait(self, timeout: float) -> int | None:
        """The exit code once the process ends (None if it is still running after `timeout`); the rest of
        stdout is then drained and must be JSON-RPC too."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=timeout)
        while (line := self._lines.get(timeout=timeout)) is not None:
            message = json.loads(line)
            assert message.get("jsonrpc") == "2.0", line
            self.stdout.append(message)
        return code

    def __enter__(self) -> _RawServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self._stderr.close()


def _descendants(pid: int) -> set[int]:
    """Every process whose ancestry leads to `pid`, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name sits in parentheses and may contain spaces; the parent pid follows the state.
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"  # a zombie has exited; only its parent's bookkeeping remains


def _initialize(server: _RawServer) -> None:
    server.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "shutdown-test", "version": "0"},
            },
        }
    )
    answer = server.read_until(lambda m: m.get("id") == 1)
    assert "result" in answer, answer
    server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


def _stop(process: subprocess.Popen[str], how: str) -> None:
    """Stop the server as a host would: a signal, or EOF on its stdin."""
    if how == "EOF":
        assert process.stdin is not None
        process.stdin.close()
    else:
        process.send_signal(signal.Signals[how])


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "EOF"])
def test_stopping_the_server_mid_download_exits_at_once_and_leaves_no_partial_file_or_process(
    stop: str, store: Store, double: RunningDouble, held: threading.Event, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    env = subprocess_env(
        POLAR_API_URL=double.base_url,
        POLAR_CUSTOMER_SESSION=store.issue_session(ada_id(store)),
        POLAR_MCP_DOWNLOAD_DIR=str(downloads),
    )
    with _RawServer(env, tmp_path / "stderr.log") as server:
        _initialize(server)
        server.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "download_file", "arguments": {"name": HELD_FILE}, "_meta": {"progressToken": 1}},
            }
        )
        progress = server.read_until(lambda m: m.get("method") == "notifications/progress")
        assert progress["params"]["progressToken"] == 1
        partial = list(downloads.iterdir())
        assert len(partial) == 1, partial
        assert partial[0].name.endswith(".part")
        assert partial[0].stat().st_size >= progress["params"]["progress"] > 0
        assert not held.is_set()  # still mid-flight: the double holds the rest of the file
        pid = server.process.pid
        children = _descendants(pid)

        stopped_at = time.monotonic()
        _stop(server.process, stop)
        code = server.wait(timeout=STOP_TIMEOUT)
        took = time.monotonic() - stopped_at
        left_after_stop = sorted(p.name for p in downloads.iterdir())
        late_code = None
        if code is None:
            # Still running: close stdin too, so the rest can be checked and the failure says what was stuck.
            _stop(server.process, "EOF")
            late_code = server.wait(timeout=STOP_TIMEOUT)
        assert not server.killed_by_watchdog

    stderr = (tmp_path / "stderr.log").read_text()
    assert left_after_stop == []
    assert code is not None, (
        f"still running {STOP_TIMEOUT} s after {stop} with stdin open; "
        f"after stdin was closed too it exited with {late_code}"
    )
    assert code == 0, stderr
    assert took < STOP_TIMEOUT
    assert list(downloads.iterdir()) == []
    assert "Traceback" not in stderr, stderr
    assert not _alive(pid)
    assert children == set(), f"the server started child processes: {children}"
    # The call never completed, and no answer claims it did.
    assert not any(m.get("id") == 2 and "result" in m and not m["result"].get("isError") for m in server.stdout)


def _recorded(root: Path) -> dict[str, int]:
    record = DownloadRecord(root)
    try:
        return {entry.path: entry.size for entry in record.snapshot().entries}
    finally:
        record.close()


async def _sync_again(env: dict[str, str]) -> dict[str, Any]:
    async with Client(build_server(load_settings(env))) as client:
        result = await client.call_tool("sync_library", {})
    assert result.structured_content is not None, result.content
    return result.structured_content


def test_a_sigterm_mid_sync_keeps_finished_files_recorded_leaves_no_partial_one_and_the_next_sync_resumes(
    store: Store, double: RunningDouble, held: threading.Event, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    env = subprocess_env(
        POLAR_API_URL=double.base_url,
        POLAR_CUSTOMER_SESSION=store.issue_session(ada_id(store)),
        POLAR_MCP_DOWNLOAD_DIR=str(downloads),
    )
    with _RawServer(env, tmp_path / "stderr.log") as server:
        _initialize(server)
        server.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "sync_library", "arguments": {}, "_meta": {"progressToken": 1}},
            }
        )
        # More than the first four files (the held one among them) can hold: at least one is done.
        server.read_until(
            lambda m: m.get("method") == "notifications/progress" and m["params"]["progress"] > 6 * 1024 * 1024
        )
        assert not held.is_set()
        _stop(server.process, "SIGTERM")
        code = server.wait(timeout=STOP_TIMEOUT)
        assert not server.killed_by_watchdog

    stderr = (tmp_path / "stderr.log").read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert [p.name for p in downloads.rglob("*") if p.name.endswith(".part")] == []
    kept = {
        p.relative_to(downloads).as_posix(): p.stat().st_size
        for p in downloads.rglob("*")
        if p.is_file() and p.name != RECORD_NAME
    }
    assert f"Async Course Videos/{HELD_FILE}" not in kept
    assert 0 < len(kept) < 11
    assert _recorded(downloads) == kept

    held.set()
    resumed = anyio.run(_sync_again, env)
    assert resumed["counts"]["present"] == len(kept)
    assert resumed["counts"]["downloaded"] == 11 - len(kept)


def _sync_command(env: dict[str, str], folder: Path, stderr: Path) -> subprocess.Popen[str]:
    with stderr.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "polar_mcp", "sync", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_stopping_polar_mcp_sync_keeps_finished_files_leaves_no_partial_one_and_the_next_run_resumes(
    stop: str, store: Store, double: RunningDouble, held: threading.Event, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    env = subprocess_env(POLAR_API_URL=double.base_url, POLAR_CUSTOMER_SESSION=store.issue_session(ada_id(store)))
    blob = next(f for f in store.files.values() if f.name == HELD_FILE).blob
    assert isinstance(blob, _HeldBlob)

    process = _sync_command(env, downloads, tmp_path / "stderr.log")
    try:
        assert blob.holding.wait(READ_TIMEOUT), "the sync never reached the held file"
        process.send_signal(signal.Signals[stop])
        out, _ = process.communicate(timeout=STOP_TIMEOUT * 3)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    stderr = (tmp_path / "stderr.log").read_text()
    assert process.returncode == 128 + signal.Signals[stop], stderr
    assert out == ""
    assert stderr.endswith(
        "polar-mcp: sync interrupted: the files finished so far are kept; run it again to fetch the rest.\n"
    )
    assert [p.name for p in downloads.rglob("*") if p.name.endswith(".part")] == []
    kept = {
        p.relative_to(downloads).as_posix(): p.stat().st_size
        for p in downloads.rglob("*")
        if p.is_file() and p.name != RECORD_NAME
    }
    assert f"Async Course Videos/{HELD_FILE}" not in kept
    assert _recorded(downloads) == kept

    held.set()
    again = subprocess.run(
        [sys.executable, "-m", "polar_mcp", "sync", str(downloads), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    counts = json.loads(again.stdout)["counts"]
    assert (counts["present"], counts["downloaded"], counts["failed"]) == (len(kept), 11 - len(kept), 0)
