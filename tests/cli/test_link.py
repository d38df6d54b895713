"""`polar-mcp link ID|NAME`: a fresh signed link on stdout, by id, file id or name."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from polar_mcp.double.runner import RunningDouble
from tests.helpers.cli import EPUB_ID, ERRATA_ID, PDF_ID, Cli

pytestmark = pytest.mark.usefixtures("token")

ERRATA_FIRST_LINE = b"Rust in Practice, 2nd edition: errata\n"
NOTICE = re.compile(r"polar-mcp: errata\.txt: link expires (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \(in (\d+) min\)\n")


def _expires_in_about_an_hour(stamp: str) -> bool:
    expires = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    left = expires - datetime.now(UTC)
    return timedelta(minutes=58) < left <= timedelta(minutes=60)


@pytest.mark.parametrize("wanted", [ERRATA_ID, "errata.txt", "ERRATA", " errata.txt "], ids=str)
def test_link_prints_only_the_signed_url_and_says_on_stderr_when_it_expires(
    cli: Cli, double: RunningDouble, wanted: str
) -> None:
    run = cli("link", wanted)
    assert run.code == 0
    url = run.out.removesuffix("\n")
    assert run.out == url + "\n"
    assert url.startswith(double.base_url + "/v1/customer-portal/downloadables/")
    notice = NOTICE.fullmatch(run.err)
    assert notice is not None, run.err
    assert _expires_in_about_an_hour(notice.group(1))
    assert notice.group(2) == "59"


def test_the_printed_link_downloads_the_file(cli: Cli) -> None:
    url = cli("link", "errata.txt").out.strip()
    response = httpx2.get(url, follow_redirects=True)
    assert response.status_code == 200
    assert response.content.startswith(ERRATA_FIRST_LINE)


def test_a_file_id_finds_the_same_file_as_its_downloadable_id(cli: Cli) -> None:
    listed = json.loads(cli("link", ERRATA_ID, "--json").out)
    by_file_id = json.loads(cli("link", listed["file_id"], "--json").out)
    assert by_file_id["id"] == ERRATA_ID


def test_link_json_has_the_listing_fields_plus_the_url_and_its_expiry(cli: Cli, double: RunningDouble) -> None:
    listed = {item["id"]: item for item in json.loads(cli("list", "--json").out)["items"]}[PDF_ID]
    run = cli("link", "rust-in-practice.pdf", "--json")
    assert (run.code, run.err) == (0, "")
    link = json.loads(run.out)
    shared = ("id", "file_id", "benefit_id", "benefit", "seller", "name", "size_bytes", "mime_type", "sha256")
    url, expires_at, expires_in = link["url"], link["expires_at"], link["expires_in_seconds"]
    assert link == {
        **{key: listed[key] for key in shared if key in listed},
        "url": url,
        "expires_at": expires_at,
        "expires_in_seconds": expires_in,
    }
    assert url.startswith(double.base_url + "/v1/customer-portal/downloadables/")
    assert _expires_in_about_an_hour(expires_at)
    assert 3500 < expires_in <= 3600


def test_a_name_matching_several_files_exits_4_listing_the_candidates_on_stderr(cli: Cli) -> None:
    run = cli("link", "rust-in-practice")
    assert (run.code, run.out) == (4, "")
    assert run.err == (
        "polar-mcp: 2 files match 'rust-in-practice'; pass one of these ids instead.\n"
        "Candidates:\n"
        f"- rust-in-practice.pdf · id {PDF_ID}\n"
        f"- rust-in-practice.epub · id {EPUB_ID}\n"
    )


def test_an_exact_name_wins_over_other_names_containing_it(cli: Cli) -> None:
    # "01-futures-and-wakers" is part of both the .mp4 and the .srt name; a whole name picks one.
    run = cli("link", "01-futures-and-wakers.srt", "--json")
    assert run.code == 0
    assert json.loads(run.out)["name"] == "01-futures-and-wakers.srt"
    assert cli("link", "01-futures-and-wakers").code == 4


def test_an_unknown_name_exits_4_and_says_how_to_find_names(cli: Cli) -> None:
    run = cli("link", "no-such-file.pdf")
    assert (run.code, run.out) == (4, "")
    assert run.err == (
        "polar-mcp: No file matches 'no-such-file.pdf'. "
        "See the names and ids with: polar-mcp list --query no-such-file.pdf\n"
    )


def test_an_unknown_id_exits_4_too(cli: Cli) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    run = cli("link", unknown, "--json")
    assert (run.code, run.out) == (4, "")
    assert run.err == (
        f"polar-mcp: No file has the id '{unknown}' (it may have been withdrawn). "
        "See current ids with: polar-mcp list\n"
    )


def test_a_file_hidden_by_polar_cannot_be_linked(cli: Cli) -> None:
    # Flagged as malware and never finished uploading: Polar leaves both out of the listing.
    assert cli("link", "ferris-free-wallpaper.scr").code == 4
    assert cli("link", "rust-in-practice.azw3").code == 4
