"""Hosted servers as an operator runs them: `polar-mcp --transport http --auth signin` in processes of
their own, sharing one database, each on its own loopback port under one public address."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.helpers.cli import subprocess_env

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Replica:
    """One server process: where it listens (its own port), and its log."""

    base_url: str
    log: Path

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"


@contextmanager
def replicas(
    env: dict[str, str], ports: Sequence[int], logs: Path, *args: str, workers: Sequence[int] = ()
) -> Iterator[list[Replica]]:
    """`python -m polar_mcp ARGS` on each of `ports` (with `--workers N` from `workers`, one each),
    started together, all healthy before they are yielded, stopped after; each one's output in
    `logs`/<port>.log."""
    running: list[tuple[subprocess.Popen[bytes], Replica]] = []
    try:
        for index, port in enumerate(ports):
            log = logs / f"{port}.log"
            count = ["--workers", str(workers[index])] if workers else []
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "polar_mcp", "--host", "127.0.0.1", "--port", str(port), *args, *count],
                    env=subprocess_env(**env),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            running.append((process, Replica(f"http://127.0.0.1:{port}", log)))
        for process, started in running:
            _wait_healthy(process, started.base_url, started.log)
        yield [started for _, started in running]
    finally:
        for process, _ in running:
            process.terminate()
        for process, _ in running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx2.get(base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not become healthy:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)  # polling another process: it decides when it is ready, not our clock
