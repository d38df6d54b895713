"""Build polar-mcp's MCP Bundle, and the local wheelhouse its tests launch it from offline.

    python packaging/mcpb/build.py bundle [--out DIR]   # validate, then pack dist/polar-mcp-<version>.mcpb
    python packaging/mcpb/build.py wheelhouse           # .cache/wheelhouse/<pyproject hash>/, once

The manifest kept beside this file has no version: the version is written once, in pyproject.toml,
and put into the staged manifest here. The bundle is the `uv` type: it carries the source and
pyproject.toml, and the host's uv installs the dependencies for the machine it runs on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MCPB = ROOT / ".tools" / "node" / "node_modules" / ".bin" / "mcpb"
# What the host needs to build and run polar-mcp from the bundle; nothing of the tests or tools.
BUNDLED = ("pyproject.toml", "README.md", "src/polar_mcp")
# uv builds the bundled project with its build backend, so the wheelhouse carries it too.
BUILD_BACKEND = "hatchling>=1.25"


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def manifest() -> dict[str, object]:
    """The repository's manifest with the package's version, placed where `mcpb init` puts it."""
    template = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    staged: dict[str, object] = {}
    for key, value in template.items():
        staged[key] = value
        if key == "display_name":
            staged["version"] = project_version()
    return staged


def stage(directory: Path) -> None:
    """Lay out the bundle's contents in `directory`: manifest, icon, and what `uv` needs to build polar-mcp."""
    (directory / "manifest.json").write_text(
        json.dumps(manifest(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    shutil.copy2(HERE / "icon.png", directory / "icon.png")
    for name in BUNDLED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, directory / name)


def mcpb(*args: str) -> None:
    if not MCPB.exists():
        sys.exit(f"{MCPB} is missing: run `make node-tools`")
    subprocess.run([str(MCPB), *args], check=True, stdout=sys.stderr)


def build_bundle(out: Path) -> Path:
    """Stage, validate with the official CLI, pack; returns the bundle's path."""
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / f"polar-mcp-{project_version()}.mcpb"
    with tempfile.TemporaryDirectory(prefix="polar-mcp-bundle-") as tmp:
        staging = Path(tmp)
        stage(staging)
        mcpb("validate", str(staging / "manifest.json"))
        mcpb("pack", str(staging), str(bundle))
    return bundle


def wheelhouse_dir() -> Path:
    """Keyed by pyproject.toml, so a change of dependencies gets a fresh wheelhouse (and the old one goes)."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return ROOT / ".cache" / "wheelhouse" / key


def build_wheelhouse() -> Path:
    """Wheels of polar-mcp's dependencies and build backend, from the package index, once per pyproject."""
    target = wheelhouse_dir()
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix="partial-"))
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(partial), str(ROOT), BUILD_BACKEND],
            check=True,
            stdout=sys.stderr,
        )
        # polar-mcp itself is left out: the bundle's launch must build it from the bundled source.
        for own in partial.glob("polar_mcp-*.whl"):
            own.unlink()
    except BaseException:
        shutil.rmtree(partial)
        raise
    partial.rename(target)
    for stale in target.parent.iterdir():
        if stale != target:
            shutil.rmtree(stale)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    bundle = commands.add_parser("bundle", help="validate and pack the bundle")
    bundle.add_argument("--out", type=Path, default=ROOT / "dist", help="folder to write the .mcpb into (dist/)")
    commands.add_parser("wheelhouse", help="build the offline wheelhouse the packaging tests use")
    args = parser.parse_args()
    path = build_bundle(args.out) if args.command == "bundle" else build_wheelhouse()
    print(path)


if __name__ == "__main__":
    main()
