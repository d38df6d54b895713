"""The version is written once, in pyproject.toml; everything that shows it follows."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import polar_mcp
from tests.helpers.packaging import ROOT, pyproject_version


def test_the_package_the_installed_metadata_and_the_cli_report_the_pyproject_version() -> None:
    expected = pyproject_version()
    cli = subprocess.run(
        [sys.executable, "-m", "polar_mcp", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert (polar_mcp.__version__, version("polar-mcp"), cli.stdout) == (expected, expected, f"polar-mcp {expected}\n")


def test_a_source_tree_that_was_never_installed_reads_its_version_from_pyproject() -> None:
    # -S leaves out site-packages, where the installed metadata lives.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import polar_mcp; print(polar_mcp.__version__)"],
        cwd=ROOT / "src",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == f"{pyproject_version()}\n"
