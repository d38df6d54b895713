"""Running `polar-mcp` in tests: what one run did, the demo catalog as the CLI prints it, a clean environment."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from polar_mcp.cli import main

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


def in_process_cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `polar-mcp ARGS...` in-process (`main`) and return what it did."""

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def subprocess_env(**values: str) -> dict[str, str]:
    """The test's environment without any POLAR_* variable of the developer's, plus `values`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("POLAR")}, **values}
