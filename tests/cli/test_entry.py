"""The entry point itself: --demo, --version, --help, flags before or after the command."""

from __future__ import annotations

import gc

import pytest

from polar_mcp import __version__
from polar_mcp import cli as cli_module
from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble
from tests.helpers.cli import DEMO_TABLE, Cli, table


@pytest.mark.parametrize("argv", [["list", "--demo"], ["--demo", "list"]], ids=["after", "before"])
def test_demo_lists_the_demo_catalog_from_an_embedded_double(cli: Cli, argv: list[str]) -> None:
    run = cli(*argv)
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [*DEMO_TABLE, "page 1 of 1 · 11 files"]


def test_demo_ignores_the_configured_api_and_token(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", "polar_cst_not_a_real_session")
    run = cli("--demo", "list", "--query", "errata")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [*table("errata.txt"), "page 1 of 1 · 1 file"]


def test_global_flags_are_accepted_before_or_after_the_command(
    cli: Cli, token: str, double: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POLAR_API_URL")
    before = cli("--api-url", double.base_url, "list", "--limit", "1", "--json")
    after = cli("list", "--limit", "1", "--json", "--api-url", double.base_url)
    assert (before.code, after.code) == (0, 0)
    assert before.out == after.out


def test_a_flag_after_the_command_wins_over_the_environment(
    cli: Cli, token: str, double: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_API_URL", "http://127.0.0.1:9")
    run = cli("doctor", "--api-url", double.base_url)
    assert run.code == 0
    assert f"API:       {double.base_url} (POLAR_API_URL)\n" in run.out


def test_version_prints_the_version_and_exits_0(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("--version")
    assert exited.value.code == 0
    assert capsys.readouterr() == (f"polar-mcp {__version__}\n", "")


def test_help_lists_every_command_and_says_tokens_come_from_the_environment(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("--help")
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: polar-mcp ")
    for command in ("list", "link", "download", "doctor", "login", "logout"):
        assert f"\n    {command} " in out, command
    assert " ".join(out.split()).endswith(
        "Tokens are read from the environment only (POLAR_CUSTOMER_SESSION or POLAR_ACCESS_TOKEN); without one, "
        "`polar-mcp login` signs in with a code Polar e-mails you."
    )


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("list", ["--benefit-id", "--query", "--page", "--limit", "--all", "--json"]),
        ("link", ["--json"]),
        ("download", ["--dir", "--overwrite", "--json"]),
        ("doctor", ["--api-url", "--timeout"]),
    ],
)
def test_each_command_has_help_of_its_own(
    cli: Cli, capsys: pytest.CaptureFixture[str], command: str, flags: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(command, "--help")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: polar-mcp {command} ")
    for flag in flags:
        assert f"  {flag}" in out, flag


def test_an_unknown_command_is_a_usage_error(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("fetch-everything")
    assert exited.value.code == 2
    assert "invalid choice: 'fetch-everything'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--demo"],
        ["--transport", "http", "--port", "9000", "--allow-configured-token"],
        ["--server=sandbox", "--log-level", "DEBUG"],
        ["--organization", "list"],  # a flag's value that is also a command's name
        ["list", "--limit", "1"],
        ["--demo", "sync", "--dry-run"],
        ["hosted", "prune"],
    ],
)
def test_the_command_line_is_read_as_the_full_parser_reads_it(argv: list[str]) -> None:
    assert cli_module.parse_args(argv) == cli_module.build_parser().parse_args(argv)


def test_a_server_start_never_builds_the_parser_of_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused() -> None:
        raise AssertionError("the full parser was built")

    monkeypatch.setattr(cli_module, "build_parser", refused)

    args = cli_module.parse_args(["--transport", "http", "--demo"])

    assert (args.command, args.transport, args.demo) == (None, "http", True)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--server"], "argument --server: expected one argument"),
        (["--allow"], "unrecognized arguments: --allow"),  # no abbreviations, as the full parser
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_a_mistake_on_a_server_start_is_worded_by_the_full_parser(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_module.parse_args(argv)
    err = capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_module.build_parser().parse_args(argv)

    assert exited.value.code == 2
    assert error in err
    assert err == capsys.readouterr().err


def test_a_stdio_start_leaves_its_heap_out_of_later_collections_before_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_when_serving: list[int] = []
    monkeypatch.setattr(cli_module.anyio, "run", lambda *_: frozen_when_serving.append(gc.get_freeze_count()))
    assert gc.get_freeze_count() == 0
    try:
        assert cli_module._serve(load_settings({})) == 0  # pyright: ignore[reportPrivateUsage]
    finally:
        gc.unfreeze()  # this test process's heap goes back to the collector

    assert len(frozen_when_serving) == 1
    assert frozen_when_serving[0] > 0
