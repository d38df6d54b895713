"""The tests' own shape: plain helpers live in tests/helpers, and every test module imports them one way."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
LOCAL_MODULES = {path.stem for path in TESTS.rglob("*.py")} - {"__init__"}
"""Names a bare `import` could only reach through pytest's sys.path insertion."""


def _imported(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def _test_file(path: Path) -> str:
    return path.relative_to(TESTS.parent).as_posix()


def test_no_test_file_imports_a_test_module_or_a_conftest() -> None:
    wrong = {
        _test_file(path): module
        for path in TESTS.rglob("*.py")
        for module in _imported(path)
        if module.split(".")[0] == "tests"
        and any(part.startswith("test_") or part == "conftest" for part in module.split("."))
    }
    assert wrong == {}, "fixtures stay in conftest; plain helpers move to tests/helpers"


def test_test_helpers_are_imported_by_their_full_name_never_through_sys_path() -> None:
    bare = {
        _test_file(path): module
        for path in TESTS.rglob("*.py")
        for module in _imported(path)
        if module.split(".")[0] in LOCAL_MODULES
    }
    assert bare == {}, "import as `from tests.helpers.<module> import ...`"


def test_every_test_folder_is_a_package_so_its_modules_have_one_name() -> None:
    folders = {path.parent for path in TESTS.rglob("test_*.py")} | {TESTS / "helpers"}
    assert sorted(_test_file(f) for f in folders if not (f / "__init__.py").exists()) == []
