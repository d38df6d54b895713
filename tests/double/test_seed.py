"""The catalogs and the generated file contents behind them."""

from __future__ import annotations

import hashlib

import pytest

from polar_mcp.double.blobs import BLOCK_SIZE, UPLOAD_PART_SIZE, Blob
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EMAIL,
    DEMO_NO_MEMBERS_CUSTOMER_EMAIL,
    DEMO_ORG_TOKEN,
    DEMO_ORGANIZATION_SLUG,
    DEMO_READONLY_ORG_TOKEN,
    DEMO_SHARED_EMAIL,
    DEMO_TEAM_ORG_TOKEN,
    SYNTHETIC_CUSTOMER_EXTERNAL_ID,
    demo_store,
    synthetic_store,
)
from polar_mcp.double.store import CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ, MEMBERS_READ, Session, readable_size


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 17])
def test_blocks_add_up_to_the_size_and_never_exceed_a_block(size: int) -> None:
    blocks = list(Blob(size, seed="s", header=b"HEAD").blocks())

    assert sum(len(b) for b in blocks) == size
    assert all(0 < len(b) <= BLOCK_SIZE for b in blocks)


def test_content_is_deterministic_and_depends_on_the_seed() -> None:
    assert Blob(100_000, seed="a").read() == Blob(100_000, seed="a").read()
    assert Blob(100_000, seed="a").read() != Blob(100_000, seed="b").read()


def test_a_header_longer_than_a_block_is_kept_whole() -> None:
    header = bytes(range(256)) * 300  # 76,800 bytes
    data = Blob(100_000, seed="x", header=header).read()

    assert data[: len(header)] == header
    assert len(data) == 100_000


def test_a_literal_blob_is_exactly_its_bytes() -> None:
    assert Blob.literal(b"hello\n").read() == b"hello\n"


def test_text_blobs_are_readable_ascii() -> None:
    text = Blob(5000, seed="t", text=True).read().decode("ascii")

    assert text.count("\n") > 10
    assert text.isprintable() is False  # newlines
    assert all(line.isprintable() for line in text.splitlines())


def test_digests_are_those_of_the_content() -> None:
    blob = Blob(200_000, seed="d", header=b"%PDF-1.7")
    digest = hashlib.sha256(blob.read())

    assert blob.digests.sha256_hex == digest.hexdigest()
    # One upload part: S3's multipart ETag, quoted, is the MD5 of the part's MD5, then "-1".
    part = hashlib.md5(blob.read()).digest()
    assert blob.digests.etag == f'"{hashlib.md5(part).hexdigest()}-1"'


def test_the_etag_of_a_file_uploaded_in_several_parts_counts_them() -> None:
    # The demo's largest video: its digests are computed once per test run anyway.
    blob = next(f.blob for f in demo_store().files.values() if f.name == "01-futures-and-wakers.mp4")
    data = blob.read()
    parts = [data[i : i + UPLOAD_PART_SIZE] for i in range(0, len(data), UPLOAD_PART_SIZE)]

    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    assert blob.digests.etag == f'"{hashlib.md5(joined).hexdigest()}-2"'


@pytest.mark.parametrize(
    ("size", "readable"),
    [(0, "0.0 B"), (500, "500.0 B"), (1024, "1.0 KB"), (1_000_000, "976.6 KB"), (15_000_000, "14.3 MB")],
)
def test_readable_size_matches_polar(size: int, readable: str) -> None:
    assert readable_size(size) == readable


def test_the_demo_catalog_looks_like_a_shop() -> None:
    store = demo_store()
    extensions = {f.name.rsplit(".", 1)[1] for f in store.files.values()}

    assert {"pdf", "epub", "zip", "mp4", "png", "txt"} <= extensions
    assert len(store.files) >= 12
    assert any(8 * 1024 * 1024 <= f.size <= 20 * 1024 * 1024 for f in store.files.values())
    # Polar refuses any visibility but public for downloadables, and lists every public benefit's name.
    assert {b.visibility for b in store.benefits.values()} == {"public"}
    assert all(g.in_benefit_grants for g in store.grants.values())
    assert any(not g.active for g in store.grants.values())
    assert all(len(b.description) <= 42 for b in store.benefits.values())
    assert {o.name: o.uses_members for o in store.organizations.values()} == {
        "Ferris Press": True,
        "Crab Collective": True,
        "Quiet Quill": False,
    }
    assert any(c.type == "team" for c in store.customers.values())
    assert store.org_tokens[DEMO_ORG_TOKEN].scopes == {CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ, MEMBERS_READ}
    assert CUSTOMER_SESSIONS_WRITE in store.org_tokens[DEMO_TEAM_ORG_TOKEN].scopes
    assert CUSTOMER_SESSIONS_WRITE not in store.org_tokens[DEMO_READONLY_ORG_TOKEN].scopes


def test_the_demo_has_a_small_file_without_checksums() -> None:
    store = demo_store()

    unchecked = [f for f in store.files.values() if not f.checksums and f.downloadable]

    assert [(f.name, f.size < 1024) for f in unchecked] == [("README.md", True)]


def test_the_demo_has_a_customer_who_signs_in_and_an_email_shared_by_two_customers() -> None:
    store = demo_store()
    press, crabs, quill = store.organizations.values()

    assert press.slug == DEMO_ORGANIZATION_SLUG
    assert [c.name for c, _ in store.customers_with_email(press, DEMO_CUSTOMER_EMAIL.upper())] == ["Ada Lovelace"]
    assert [c.name for c, _ in store.customers_with_email(crabs, DEMO_SHARED_EMAIL)] == ["Acme Robotics", "Alice Chen"]
    assert [c.name for c, _ in store.customers_with_email(quill, DEMO_NO_MEMBERS_CUSTOMER_EMAIL)] == ["Mary Shelley"]


def test_rebuilt_catalogs_keep_their_ids() -> None:
    assert list(demo_store().files) == list(demo_store().files)
    assert list(demo_store().benefits) == list(demo_store().benefits)


def test_a_synthetic_catalog_spreads_items_over_granted_benefits() -> None:
    store = synthetic_store(items=2000, benefits=20)
    customer = store.customer_by_external_id(SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    session = store.live_session(store.issue_session(customer.id))
    assert isinstance(session, Session)

    rows = store.downloadables(session)

    assert len(rows) == 2000
    assert len(store.benefits) == len(store.grants) == 20
    assert {len(b.file_ids) for b in store.benefits.values()} == {100}
    assert max(f.size for f in store.files.values()) <= 16 * 1024
    # Newest grant first: the last benefit was granted last.
    assert rows[0].benefit.description == "Bundle 020"


def test_a_synthetic_catalog_needs_a_benefit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        synthetic_store(items=10, benefits=0)
