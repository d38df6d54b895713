"""polar-mcp: an MCP server for the files a customer bought on Polar.sh."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    """The version written in pyproject.toml, as installed; read from the file itself in a bare source tree."""
    try:
        return version("polar-mcp")
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        if not pyproject.is_file():
            return "0+unknown"
        import tomllib  # only in a bare source tree: an installed start does not pay for it

        with pyproject.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])


__version__ = _version()
