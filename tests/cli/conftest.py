"""CLI fixtures: `polar_mcp.cli.main` run in-process against the embedded double over loopback.

Every POLAR_* variable of the developer's environment is cleared first, and HOME points into the
test's temporary folder, so neither a real token nor a real Downloads folder can be touched.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore2
import pytest

from polar_mcp.cli import main
from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store
from polar_mcp.double.store import Store

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")

# The demo catalog as Ada sees it: ids are stable (derived from the catalog), newest grant first.
DEMO_TABLE = [
    "NAME                             SIZE      TYPE                  ID",
    "chapter-12-draft.pdf             640.0 KB  application/pdf       4a9bf4bf-4b17-4b02-8326-42f01c19c576",
    "ferris-dawn-3840x2160.png        2.8 MB    image/png             7a70b9af-88f5-4619-bd15-bbeb0309738d",
    "ferris-dusk-2560x1440.png        1.5 MB    image/png             0004eba1-ed87-4957-a541-7e08f3b816bb",
    "01-futures-and-wakers.mp4        14.1 MB   video/mp4             7df74c66-0a7b-418c-aff2-9e833257e6d5",
    "02-inside-the-tokio-runtime.mp4  6.0 MB    video/mp4             1688f9d9-29bc-413f-808b-dd1aef176fb2",
    "01-futures-and-wakers.srt        47.1 KB   text/plain            55584853-7aa8-4e8d-869f-5cd5be7a2e56",
    "async-course-code.zip            402.6 KB  application/zip       8e276a5e-fcbf-41c5-b9ae-4cc9ae61d10f",
    "README.md                        161.0 B   text/markdown         a7f1e9e7-cda3-4b30-a59d-29469da1b1b5",
    "rust-in-practice.pdf             3.2 MB    application/pdf       65920320-361a-43f8-8912-9e470d18825e",
    "rust-in-practice.epub            1.2 MB    application/epub+zip  59c21410-c03b-4cc9-b37a-0e900d109c0d",
    "errata.txt                       289.0 B   text/plain            272a18e2-6fe5-496d-adc5-22e38eb071c8",
]


def table(*names: str) -> list[str]:
    """The header and the rows of these demo files, in catalog order, with columns fitted to them."""
    rows = [["NAME", "SIZE", "TYPE", "ID"]]
    for line in DEMO_TABLE[1:]:
        name, number, unit, kind, id_ = line.split()
        if name in names:
            rows.append([name, f"{number} {unit}", kind, id_])
    assert len(rows) == len(names) + 1, names
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


ERRATA_ID = "272a18e2-6fe5-496d-adc5-22e38eb071c8"
PDF_ID = "65920320-361a-43f8-8912-9e470d18825e"
EPUB_ID = "59c21410-c03b-4cc9-b37a-0e900d109c0d"


@dataclass(frozen=True)
class Run:
    """One CLI invocation: its exit code and everything it wrote."""

    code: int
    out: str
    err: str

    @property
    def messages(self) -> str:
        """stderr without log records (their timestamps vary, and some are logged once per process)."""
        return "".join(line for line in self.err.splitlines(keepends=True) if not LOG_LINE.match(line))


Cli = Callable[..., Run]


@pytest.fixture(scope="package")
def store() -> Store:
    return demo_store()


@pytest.fixture(scope="package")
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running


@pytest.fixture(scope="package", autouse=True)
def _one_ssl_context() -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    """Build the default SSL context once for the package instead of twice per command.

    Each command opens two HTTP clients, and loading the CA bundle costs ~70 ms per client: most of
    a command's run time here. Every test talks plain HTTP over loopback, so the context is never used.
    """
    context = httpcore2.default_ssl_context()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpcore2, "default_ssl_context", lambda **_: context)
        yield


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME for the test: the default download folder is under it."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:  # pyright: ignore[reportUnusedFunction]
    for name in list(os.environ):
        if name.startswith("POLAR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    """main() reconfigures the root logger onto the captured stderr; undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _faults_off(store: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    store.faults.reset()
    yield
    store.faults.reset()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `polar-mcp ARGS...` in-process and return what it did."""

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def ada_token(store: Store, **kwargs: Any) -> str:
    """A fresh customer session for Ada, the demo customer."""
    return store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id, **kwargs)


@pytest.fixture
def token(store: Store, double: RunningDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    """Ada's session in POLAR_CUSTOMER_SESSION and the double in POLAR_API_URL."""
    session = ada_token(store)
    monkeypatch.setenv("POLAR_API_URL", double.base_url)
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", session)
    return session
