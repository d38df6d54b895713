"""The small text helpers: sizes as Polar's `size_readable` writes them, size settings, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from polar_mcp.config import ConfigError, load_settings
from polar_mcp.double.store import readable_size
from polar_mcp.untrusted import human_size, parse_size, utc_iso


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0.0 B"),
        (1, "1.0 B"),
        (289, "289.0 B"),
        (1023, "1023.0 B"),
        (1024, "1.0 KB"),
        (50_000, "48.8 KB"),
        (1_000_000, "976.6 KB"),
        (1_048_575, "1024.0 KB"),
        (1_048_576, "1.0 MB"),
        (1_234_567, "1.2 MB"),
        (5 * 1024**3, "5.0 GB"),
        (1024**4, "1.0 TB"),
        (1024**5, "1.0 PB"),
        (2**63 - 1, "8.0 EB"),
    ],
)
def test_a_size_reads_exactly_as_polars_size_readable(size: int, expected: str) -> None:
    assert human_size(size) == expected


def test_a_size_reads_as_the_embedded_doubles_size_readable_up_to_petabytes() -> None:
    sizes = [n * 10**k + d for k in range(16) for n in (1, 3, 7) for d in (-1, 0, 1) if n * 10**k + d >= 0]
    sizes += [1024**k + d for k in range(5) for d in (-1, 0, 1)]

    assert [human_size(size) for size in sizes] == [readable_size(size) for size in sizes]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5GB", 5 * 1024**3),
        ("500MB", 500 * 1024**2),
        ("1.5 GB", 1_610_612_736),
        (" 2 gb ", 2 * 1024**3),
        ("1.1GB", 1_181_116_006),
        ("64k", 64 * 1024),
        ("64KiB", 64 * 1024),
        ("1TB", 1024**4),
        ("4096", 4096),
        ("10B", 10),
    ],
)
def test_a_size_setting_is_read_in_the_units_sizes_are_written_in(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "5 XB", "-1GB", "1e9", "5 G B", "five"])
def test_a_size_setting_that_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"^must be a size such as 500MB, 2GB or a number of bytes \(1 KB = 1024 bytes\)$"
    ):
        parse_size(text)


def test_the_download_limit_defaults_to_5gb_of_1024_steps_and_reads_the_same_units() -> None:
    assert load_settings({}).max_download_size == 5 * 1024**3
    assert load_settings({"POLAR_MCP_MAX_DOWNLOAD_SIZE": "1.5 GB"}).max_download_size == 1_610_612_736
    assert load_settings({}, {"max_download_size": "500MB"}).max_download_size == 500 * 1024**2


def test_a_download_limit_that_is_not_a_size_names_the_setting() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"POLAR_MCP_MAX_DOWNLOAD_SIZE": "lots"})

    assert str(raised.value) == (
        "Invalid configuration: POLAR_MCP_MAX_DOWNLOAD_SIZE / --max-download-size: must be a size such as "
        "500MB, 2GB or a number of bytes (1 KB = 1024 bytes) (got 'lots')"
    )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC), "2026-08-01T12:00:00Z"),
        (datetime(2026, 8, 1, 14, 30, 5, 999_999, tzinfo=timezone(timedelta(hours=2))), "2026-08-01T12:30:05Z"),
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-1))), "2026-01-01T01:30:00Z"),
        (datetime(2025, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))), "2026-01-01T00:30:00Z"),
    ],
    ids=["utc", "ahead-with-microseconds", "behind", "behind-across-a-year"],
)
def test_utc_iso_is_utc_to_the_second_ending_in_z(moment: datetime, expected: str) -> None:
    assert utc_iso(moment) == expected
