"""Hosted servers as an operator runs them: `polar-mcp --transport http --auth signin` in processes of
their own, sharing one database, each on its own loopback port under one public address."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import wait_healthy

from tests.helpers.cli import subprocess_env

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Replica:
    """One server process: where it listens (its own port), and its log."""

    base_url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

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
            wait_healthy(process, started.base_url, timeout=START_TIMEOUT, log_tail=started.log_text)
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
