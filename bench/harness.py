"""Timing helpers, a raw JSON-RPC stdio session, machine facts and the Markdown table writer."""

from __future__ import annotations

import json
import os
import platform
import queue
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
FLOOR_SERVER = Path(__file__).resolve().parent / "floor_server.py"
PROTOCOL_VERSION = "2025-11-25"
Figure = float | int | str


class CaseResult(TypedDict):
    """What one benchmark returns: its figures, the target in words, and whether it was met."""

    name: str
    title: str
    figures: dict[str, Figure]
    target: str
    passed: bool
    notes: list[str]


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of nothing")
    return float(statistics.median(values))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of `values`."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def machine_facts() -> dict[str, str]:
    """nproc, CPU model, Python and OS: what a reader needs to compare figures between machines."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"
    return {
        "nproc": str(usable),
        "cpu": model,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load": load,
    }


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and every process under it (a server's workers)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += tree_cpu_seconds(int(child))
            except FileNotFoundError:
                continue
    return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Servers under test ---------------------------------------------------------------------------


SERVER_PYTHON = os.environ.get("POLAR_MCP_BENCH_PYTHON") or sys.executable
"""The Python the servers under test run on. `make bench` gives one whose environment holds polar-mcp as a
user installs it (its wheel and runtime dependencies, nothing else): the development environment's test
tools change what polar-mcp imports (selenium brings trio, which httpcore2 then loads on first use)."""


def polar_mcp_command(*args: str) -> list[str]:
    """How a host launches polar-mcp: `python -m polar_mcp`."""
    return [SERVER_PYTHON, "-m", "polar_mcp", *args]


def floor_command() -> list[str]:
    return [SERVER_PYTHON, str(FLOOR_SERVER)]


def server_env(api_url: str, token: str, **extra: str) -> dict[str, str]:
    """The environment a host would give: ours, without any POLAR_* variable of the caller's."""
    # Without PYTHONDONTWRITEBYTECODE, as an installed package runs: bytecode is cached after the first start.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLAR") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"POLAR_API_URL": api_url, "POLAR_CUSTOMER_SESSION": token, "POLAR_MCP_LOG_LEVEL": "WARNING"})
    env.update(extra)
    return env


class StdioSession:
    """A server subprocess spoken to in raw JSON-RPC lines, so the client adds as little as possible.

    A reader thread queues stdout lines; every wait is bounded by `timeout`. `raw` keeps the last
    answer's line exactly as it came over the wire.
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str], *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            cwd=ROOT,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._next_id = 0
        self.raw = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def send(self, method: str, params: Mapping[str, Any] | None = None, *, notify: bool = False) -> int:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        if not notify:
            self._next_id += 1
            message["id"] = self._next_id
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()
        return self._next_id

    def receive(self, request_id: int) -> dict[str, Any]:
        """The answer to `request_id` (notifications in between are skipped)."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to request {request_id} within {self.timeout} s")
            line = self._lines.get(timeout=left)
            if not line:
                raise RuntimeError(f"the server closed stdout (exit code {self.process.poll()})")
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"JSON-RPC error: {message['error']}")
                self.raw = line.rstrip(b"\r\n")
                return message

    def request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.receive(self.send(method, params))

    def initialize(self) -> dict[str, Any]:
        """The handshake most hosts send today: initialize, then notifications/initialized."""
        answer = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "polar-mcp-bench", "version": "0"},
            },
        )
        self.send("notifications/initialized", notify=True)
        return answer

    def handshake_at_once(self) -> int:
        """initialize, notifications/initialized and tools/list written together, as a host that does
        not wait would (the server reads them when it is ready); the id to receive tools/list by."""
        client = {"name": "bench", "version": "0"}
        self.send("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": client})
        self.send("notifications/initialized", notify=True)
        return self.send("tools/list")

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": name, "arguments": dict(arguments)})
        result: dict[str, Any] = answer["result"]
        if result.get("isError"):
            raise RuntimeError(f"{name} failed: {result.get('content')}")
        return result

    def close(self) -> None:
        """End the server at once: its figures are taken, and a clean exit costs about a second."""
        self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdin is not None:
            with suppress(BrokenPipeError):
                self.process.stdin.close()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> StdioSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start_to_first_tools_list(command: Sequence[str], env: Mapping[str, str]) -> tuple[float, float, bytes]:
    """Seconds from spawning the server to its answer to the first tools/list, the CPU seconds (user +
    system) it used to get there, and that answer's line.

    The three messages are written at once, as a host that does not wait would; the server reads
    them when it is ready. The CPU figure is the child's own rusage, read once it is reaped (it is
    killed right after its answer). On a shared VM it swings with the wall time (the cores' speed
    itself varies), so it is reported beside it, not used to judge.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with StdioSession(command, env) as session:
        session.receive(session.handshake_at_once())
        elapsed = time.perf_counter() - session.started_at
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, session.raw


def start_to_first_call(command: Sequence[str], env: Mapping[str, str]) -> float:
    """Seconds from spawning the server to its answer to the first list_downloadables, sent after the
    tools/list a host sends first: what a start costs the person waiting for the first answer."""
    with StdioSession(command, env) as session:
        session.initialize()
        session.request("tools/list")
        session.call_tool("list_downloadables", {})
        return time.perf_counter() - session.started_at


def instructions_to_first_tools_list(command: Sequence[str], env: Mapping[str, str]) -> int | None:
    """Instructions the server executes from its start to its answer to the first tools/list, counted
    by valgrind's callgrind; None where valgrind is not installed.

    Unlike seconds, the count is the same from one run to the next whatever else the machine does
    (the program runs about 50 times slower under valgrind, so the seconds mean nothing there).
    `callgrind_control --dump` takes the count the moment the answer has arrived.
    """
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="polar-mcp-callgrind-") as folder:
        counted = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out.%p", *command]
        # A fixed hash seed: string hashing is otherwise randomised per process, and with it the work
        # that dicts and sets do.
        # No warm-up: it starts 0.1 s after the tools/list answer, and under valgrind that is too little
        # of the program's time for the count to be sure to stop before it.
        quiet = {**env, "PYTHONHASHSEED": "0", "POLAR_MCP_WARM_UP": "off"}
        with StdioSession(counted, quiet, timeout=600) as session:
            session.receive(session.handshake_at_once())
            dump = ["callgrind_control", "--dump", str(session.pid)]
            subprocess.run(dump, capture_output=True, timeout=60, check=True)
            # The dump's header carries the total: wait for valgrind (another process) to write it.
            deadline = time.monotonic() + 60
            while (total := _callgrind_total(Path(folder))) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("callgrind wrote no dump within 60 s")
                time.sleep(0.1)
    return total


def wait_healthy(
    process: subprocess.Popen[bytes], base_url: str, *, timeout: float, log_tail: Callable[[], str]
) -> None:
    """Poll an HTTP server process's /healthz until it answers 200; if it exits or the time runs
    out first, fail with the tail of its log, which says why."""
    import httpx2

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_tail()}")
        try:
            if httpx2.get(base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not become healthy within {timeout:g} s:\n{log_tail()}")
        time.sleep(0.05)  # polling another process: it decides when it is ready, not our clock


def _callgrind_total(folder: Path) -> int | None:
    for dump in folder.glob("out.*.1"):
        with dump.open("rb") as file:
            header = file.read(4096).decode(errors="replace")  # the total is in the header, not the 10 MB after
        match = re.search(r"^summary: (\d+)$", header, re.MULTILINE)
        if match is not None:
            return int(match.group(1))
    return None


def import_breakdown(modules: str, *, top: int = 6) -> tuple[float, list[tuple[str, float]]]:
    """`python -X importtime -c "import MODULES"`: total ms, and self time (ms) per top-level package."""
    completed = subprocess.run(
        [SERVER_PYTHON, "-X", "importtime", "-c", f"import {modules}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    totals: dict[str, float] = {}
    for line in completed.stderr.splitlines():
        # "import time:  self [us] | cumulative | name", nesting shown by indenting the name.
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|", 2)
        package = name.strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + int(own) / 1000
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    return sum(totals.values()), [(name, round(value)) for name, value in ranked[:top]]


@contextmanager
def http_server_process(
    api_url: str,
    *,
    timeout: float = 30.0,
    port: int | None = None,
    args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, int]]:
    """`polar-mcp --transport http ARGS` as a subprocess on a loopback port (free unless given), with
    `extra_env` on top of a host's environment; yield its base URL and pid."""
    port = port or free_port()
    env = server_env(api_url, "", POLAR_MCP_TIMEOUT="30")
    env.pop("POLAR_CUSTOMER_SESSION")
    env.update(extra_env or {})
    # Its log goes to a file, read only to say why a start failed.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            polar_mcp_command("--transport", "http", "--host", "127.0.0.1", "--port", str(port), *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def said() -> str:
                log.seek(0)
                return log.read()[-2000:]

            wait_healthy(process, base, timeout=timeout, log_tail=said)
            yield base, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# Runs -------------------------------------------------------------------------------------------


def repeat(runs: int, one_run: Callable[[int], dict[str, float]]) -> dict[str, list[float]]:
    """Call `one_run(i)` `runs` times and collect each figure across runs."""
    collected: dict[str, list[float]] = {}
    for index in range(runs):
        for key, value in one_run(index).items():
            collected.setdefault(key, []).append(value)
    return collected


# The report -------------------------------------------------------------------------------------


def markdown(
    results: Sequence[CaseResult],
    facts: Mapping[str, str],
    command: str,
    *,
    runs_note: str,
    load_before: str | None = None,
) -> str:
    """docs/BENCHMARKS.md: how to reproduce, the machine, the summary table, then each case's figures."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by the harness in `bench/` (do not edit by hand). Reproduce with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {facts['nproc']} CPUs ({facts['cpu']}), Python {facts['python']}, {facts['os']}; "
        f"load average (1, 5, 15 min) {load_before or facts['load']} before the run, {facts['load']} after. "
        f"{runs_note} Absolute times drift on a shared machine: the ratios are computed within each run "
        "(both sides measured interleaved) and their median is reported.",
        "",
        "| benchmark | result | target | met |",
        "| --- | --- | --- | --- |",
    ]
    for result in results:
        headline = str(result["figures"].get("headline", ""))
        verdict = "yes" if result["passed"] else "**no**"
        lines.append(f"| {result['title']} | {headline} | {result['target']} | {verdict} |")
    for result in results:
        lines += ["", f"## {result['title']}", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {key} | {value} |" for key, value in result["figures"].items() if key != "headline"]
        if result["notes"]:
            lines.append("")
            lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
