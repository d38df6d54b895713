"""A throwaway PostgreSQL server for tests: its own folder, its own loopback port, removed when done.

Debian's `postgresql` package keeps its programs in /usr/lib/postgresql/<version>/bin, off PATH, and
may run a cluster of its own on 5432: this server shares nothing with it. `initdb` refuses to run as
root, so as root every server-side command runs as the `postgres` user, in a folder that user owns
(pytest's tmp_path, mode 0700 under root's pytest folder, is not enterable by it).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
_REQUIRED = ("initdb", "pg_ctl", "pg_isready", "createdb")
# --no-sync here and fsync=off at start trade durability, which a throwaway server does not need, for speed.
_INITDB_ARGS = ("-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync", "--wal-segsize=1")


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL's programs, else the folder of `initdb` on PATH, else None."""
    debian = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if debian:
        return max(debian, key=lambda bin_dir: int(bin_dir.parent.name))
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing() -> str | None:
    """Why no server can be started here, or None when one can."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return "no PostgreSQL server programs (initdb) on this machine"
    absent = [name for name in _REQUIRED if not (bin_dir / name).is_file()]
    if absent:
        return f"PostgreSQL programs missing from {bin_dir}: {', '.join(absent)}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root, and there is no {SUPERUSER!r} user to run PostgreSQL as"
    return None


def database_name(test_id: str) -> str:
    """A database name for a test (`path::name`): its name, readable, then a hash of the whole id so
    that two ids never share one; unquoted-safe and within PostgreSQL's 63 bytes."""
    slug = re.sub(r"[^a-z0-9_]+", "_", test_id.rsplit("::", 1)[-1].lower()).strip("_")
    return f"db_{slug[:50]}_{hashlib.sha256(test_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class PostgresServer:
    """A running server: trust authentication for `postgres` on 127.0.0.1:`port`."""

    bin_dir: Path
    root: Path
    """Holds the data folder, the Unix socket and the server's log."""
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def url(self, database: str = "postgres") -> str:
        """`postgresql://postgres@127.0.0.1:PORT/DATABASE`: a SQLAlchemy URL once given a driver."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database called `name` (see `database_name`); return its URL."""
        self._client("createdb", name)
        return self.url(name)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _client(self, program: str, *args: str) -> None:
        _run([str(self.bin_dir / program), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, *args])


@contextmanager
def running_postgres(bin_dir: Path | None = None, *, timeout: float = 30.0) -> Iterator[PostgresServer]:
    """Start a fresh server; stop it and remove its folder on the way out, whatever happened inside."""
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(missing())
    template = _template(bin_dir)
    root = _owned_folder("polar-mcp-pg-")
    try:
        _run_as_owner(["cp", "-a", str(template), str(root / "data")])
        yield _start(bin_dir, root, timeout)
    finally:
        # Also when start-up failed half-way: a postmaster.pid means a server may be running.
        if (root / "data" / "postmaster.pid").exists():
            _stop(bin_dir, root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _template(bin_dir: Path) -> Path:
    """A fresh cluster made once by initdb and kept in the temporary folder, to be copied for each server.

    initdb takes one to four seconds here (most of a server's start-up), a copy a tenth of one. The
    name changes with the user, the PostgreSQL installed and initdb's arguments (an upgrade makes a new one);
    several sessions may race to make it: one rename wins, the others throw theirs away.
    """
    initdb = bin_dir / "initdb"
    fingerprint = f"{initdb}:{initdb.stat().st_mtime_ns}:{_INITDB_ARGS}"
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    template = Path(tempfile.gettempdir()) / f"polar-mcp-pg-template-{_owner_uid()}-{digest}"
    if template.is_dir() and template.stat().st_uid == _owner_uid():
        return template
    staging = _owned_folder("polar-mcp-pg-staging-")
    try:
        _run_as_owner([str(initdb), "-D", str(staging / "data"), *_INITDB_ARGS])
        with suppress(OSError):
            (staging / "data").rename(template)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return template


def _owned_folder(prefix: str) -> Path:
    """A new folder in the temporary folder, owned by whoever runs the server."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SUPERUSER)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    return folder


def _owner_uid() -> int:
    return pwd.getpwnam(SUPERUSER).pw_uid if os.geteuid() == 0 else os.geteuid()


def _start(bin_dir: Path, root: Path, timeout: float) -> PostgresServer:
    # A port found free can be taken before the server binds it: try another one then.
    attempts_left = 3
    while True:
        server = PostgresServer(bin_dir, root, _free_port())
        options = (
            f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        server.log.unlink(missing_ok=True)  # so that what is read below is this attempt's
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(server.log)]
        started = _run_as_owner([*pg_ctl, "-o", options, "-w", "-t", str(int(timeout)), "start"], check=False)
        if started.returncode == 0:
            _wait_until_accepting(server, timeout)
            return server
        attempts_left -= 1
        if attempts_left == 0 or "Address already in use" not in server.log_tail():
            raise RuntimeError(f"PostgreSQL did not start:\n{started.stdout}{started.stderr}\n{server.log_tail()}")


def _wait_until_accepting(server: PostgresServer, timeout: float) -> None:
    """pg_ctl -w has seen the server ready; confirm it answers on TCP, within `timeout`."""
    deadline = time.monotonic() + timeout
    command = [str(server.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port), "-t", "1"]
    while subprocess.run(command, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL started but does not accept connections:\n{server.log_tail()}")
        time.sleep(0.02)  # polling another process: it decides when it is ready, not our clock


def _stop(bin_dir: Path, data: Path) -> None:
    # Immediate: the data is thrown away, so nothing needs to be flushed.
    _run_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_as_owner(command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        command = ["runuser", "-u", SUPERUSER, "--", *command]
    return _run(command, check=check)


def _run(command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done
