"""The double's seed data: a small demo that looks like a real shop, and big synthetic catalogs for benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from polar_mcp.double.blobs import Blob
from polar_mcp.double.store import CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ, MEMBERS_READ, File, Organization, Store

DEMO_ORG_TOKEN = "polar_oat_demo_ferris_press_sessions"  # noqa: S105 - a demo credential
"""Organization token of Ferris Press with `customer_sessions:write`, `customers:read` and `members:read`."""
DEMO_READONLY_ORG_TOKEN = "polar_oat_demo_ferris_press_readonly"  # noqa: S105
"""Organization token of Ferris Press with `customers:read` only (creating sessions answers 403)."""
DEMO_TEAM_ORG_TOKEN = "polar_oat_demo_crab_collective_sessions"  # noqa: S105
"""Organization token of Crab Collective (a team customer among its customers), every scope of DEMO_ORG_TOKEN."""
DEMO_NO_MEMBERS_ORG_TOKEN = "polar_oat_demo_quiet_quill_sessions"  # noqa: S105
"""Organization token of Quiet Quill, an organization without members: its sessions are `polar_cst_`."""
DEMO_ORGANIZATION_SLUG = "ferris-press"
"""Ferris Press's slug, as in its portal address."""
DEMO_TEAM_ORGANIZATION_SLUG = "crab-collective"
DEMO_NO_MEMBERS_ORGANIZATION_SLUG = "quiet-quill"
DEMO_CUSTOMER_EMAIL = "ada@example.com"
"""Ada's e-mail: she can sign in to Ferris Press with a code."""
DEMO_SHARED_EMAIL = "alice@acme.example"
"""Alice's e-mail at Crab Collective, where it names two customers (her team and her own account): 409."""
DEMO_NO_MEMBERS_CUSTOMER_EMAIL = "mary@example.com"
DEMO_CUSTOMER_EXTERNAL_ID = "ada-1815"
"""Ada Lovelace, Ferris Press's main demo customer."""
DEMO_OTHER_CUSTOMER_EXTERNAL_ID = "grace-1906"
DEMO_TEAM_CUSTOMER_EXTERNAL_ID = "acme-robotics"
DEMO_TEAM_OWNER_EXTERNAL_ID = "acme-alice"
DEMO_TEAM_MEMBER_EXTERNAL_ID = "acme-bob"
SYNTHETIC_CUSTOMER_EXTERNAL_ID = "bench-customer"

_ALL_SCOPES = (CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ, MEMBERS_READ)

_MB = 1024 * 1024
_PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
_ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00"
_EPUB = _ZIP + b"mimetypeapplication/epub+zip"
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
_MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"

_ERRATA = b"""Rust in Practice, 2nd edition: errata

p. 42   `Rc<RefCell<T>>` example: the second borrow_mut() must be in its own scope.
p. 118  Listing 7.3 returns `impl Iterator<Item = &str>`, not `Vec<&str>`.
p. 301  "Pin is a pointer" -> "Pin wraps a pointer".

Thanks to every reader who wrote in.
"""
_README = b"""# Async course: code samples

Each folder matches one video of the course. Run any sample with

    cargo run --example <name>

Samples need Rust 1.85 or later.
"""


def _at(year: int, month: int, day: int) -> float:
    return datetime(year, month, day, 12, tzinfo=UTC).timestamp()


def demo_store(clock: Callable[[], float] = time.time) -> Store:
    """A store with three organizations, their customers, tokens and files, ready for a demo or tests.

    Ferris Press sells to individuals (members on, as Polar's default): Ada (external id
    DEMO_CUSTOMER_EXTERNAL_ID, e-mail DEMO_CUSTOMER_EMAIL) holds five file benefits, a Discord benefit
    with no files and a revoked grant; Grace holds only the wallpapers. Crab Collective: Acme Robotics
    is a team customer whose owner and member share a style guide and where only the member holds an
    onboarding seat; its owner Alice also buys on her own, with the same e-mail. Quiet Quill has no
    members: its sessions are customer sessions.
    """
    store = Store(clock=clock)
    press = store.add_organization("Ferris Press", DEMO_ORGANIZATION_SLUG)
    store.add_org_token(DEMO_ORG_TOKEN, organization_id=press.id, scopes=_ALL_SCOPES)
    store.add_org_token(DEMO_READONLY_ORG_TOKEN, organization_id=press.id, scopes=(CUSTOMERS_READ,))

    def generated(org: Organization, name: str, mime: str, size: int, header: bytes = b"") -> File:
        blob = Blob(size, seed=f"demo:{name}", header=header, text=mime.startswith("text/"))
        return store.add_file(org, name, mime, blob)

    pdf = generated(press, "rust-in-practice.pdf", "application/pdf", 3_407_872, _PDF)
    pdf.version = "2.1"
    epub = generated(press, "rust-in-practice.epub", "application/epub+zip", 1_245_184, _EPUB)
    kindle = generated(press, "rust-in-practice.azw3", "application/vnd.amazon.ebook", 1_310_720)
    kindle.is_uploaded = False  # an upload that never finished: Polar hides it
    errata = store.add_file(press, "errata.txt", "text/plain", Blob.literal(_ERRATA), version="2025-03")
    ebooks = store.add_benefit(press, "Rust Ebook Bundle", [pdf, epub, kindle, errata])

    futures = generated(press, "01-futures-and-wakers.mp4", "video/mp4", 14 * _MB + 123_457, _MP4)
    runtime = generated(press, "02-inside-the-tokio-runtime.mp4", "video/mp4", 6 * _MB, _MP4)
    subtitles = generated(press, "01-futures-and-wakers.srt", "text/plain", 48_213)
    videos = store.add_benefit(press, "Async Course Videos", [futures, runtime, subtitles])

    dawn = generated(press, "ferris-dawn-3840x2160.png", "image/png", 2_883_584, _PNG)
    dusk = generated(press, "ferris-dusk-2560x1440.png", "image/png", 1_572_864, _PNG)
    flagged = generated(press, "ferris-free-wallpaper.scr", "application/octet-stream", 204_800)
    flagged.malware = True
    wallpapers = store.add_benefit(press, "Wallpaper Pack", [dawn, dusk, flagged])

    code = generated(press, "async-course-code.zip", "application/zip", 412_311, _ZIP)
    # Its uploader sent no checksum: the listing shows nulls, as Polar never computes one.
    readme = store.add_file(press, "README.md", "text/markdown", Blob.literal(_README), checksums=False)
    samples = store.add_benefit(press, "Code Samples", [code, readme])

    draft = generated(press, "chapter-12-draft.pdf", "application/pdf", 655_360, _PDF)
    early = store.add_benefit(press, "Early Access: Chapter 12", [draft])
    discord = store.add_benefit(press, "Ferris Press Discord", type="discord")
    preview = generated(press, "preview-chapter.pdf", "application/pdf", 98_304, _PDF)
    beta = store.add_benefit(press, "Preview Chapter (2024)", [preview])

    ada = store.add_customer(press, DEMO_CUSTOMER_EMAIL, "Ada Lovelace", external_id=DEMO_CUSTOMER_EXTERNAL_ID)
    store.grant(ada, beta, _at(2024, 11, 2), revoked_at=_at(2025, 1, 15))
    store.grant(ada, ebooks, _at(2025, 2, 10))
    store.grant(ada, discord, _at(2025, 2, 10))
    store.grant(ada, videos, _at(2025, 4, 22))
    store.grant(ada, samples, _at(2025, 4, 22))
    store.grant(ada, wallpapers, _at(2025, 6, 1))
    store.grant(ada, early, _at(2025, 7, 9))
    grace = store.add_customer(press, "grace@example.com", "Grace Hopper", external_id=DEMO_OTHER_CUSTOMER_EXTERNAL_ID)
    store.grant(grace, wallpapers, _at(2025, 5, 5))

    crabs = store.add_organization("Crab Collective", DEMO_TEAM_ORGANIZATION_SLUG)
    store.add_org_token(DEMO_TEAM_ORG_TOKEN, organization_id=crabs.id, scopes=_ALL_SCOPES)
    guide = generated(crabs, "brand-style-guide.pdf", "application/pdf", 2_097_152, _PDF)
    fonts = generated(crabs, "crab-sans-fonts.zip", "application/zip", 786_432, _ZIP)
    style = store.add_benefit(crabs, "Team Style Guide", [guide, fonts])
    onboarding = generated(crabs, "onboarding-walkthrough.mp4", "video/mp4", 3 * _MB, _MP4)
    seat = store.add_benefit(crabs, "Onboarding Videos (seat)", [onboarding])
    acme = store.add_customer(
        crabs, "it@acme.example", "Acme Robotics", external_id=DEMO_TEAM_CUSTOMER_EXTERNAL_ID, type="team"
    )
    store.add_member(acme, DEMO_SHARED_EMAIL, "Alice Chen", external_id=DEMO_TEAM_OWNER_EXTERNAL_ID, role="owner")
    bob = store.add_member(acme, "bob@acme.example", "Bob Okafor", external_id=DEMO_TEAM_MEMBER_EXTERNAL_ID)
    store.grant(acme, style, _at(2025, 3, 3))
    store.grant(acme, seat, _at(2025, 3, 4), member=bob)
    store.add_customer(crabs, "linus@example.com", "Linus Solo", external_id="linus-solo")
    alice = store.add_customer(crabs, DEMO_SHARED_EMAIL, "Alice Chen", external_id="alice-chen")
    stickers = store.add_file(crabs, "crab-stickers.txt", "text/plain", Blob.literal(b"Stickers: ferris, crab\n"))
    store.grant(alice, store.add_benefit(crabs, "Sticker Pack", [stickers]), _at(2025, 8, 8))

    quill = store.add_organization("Quiet Quill", DEMO_NO_MEMBERS_ORGANIZATION_SLUG, uses_members=False)
    store.add_org_token(DEMO_NO_MEMBERS_ORG_TOKEN, organization_id=quill.id, scopes=_ALL_SCOPES)
    chapbook = generated(quill, "night-poems-chapbook.pdf", "application/pdf", 131_072, _PDF)
    mary = store.add_customer(quill, DEMO_NO_MEMBERS_CUSTOMER_EMAIL, "Mary Shelley", external_id="mary-1797")
    store.grant(mary, store.add_benefit(quill, "Poetry Chapbook", [chapbook]), _at(2025, 9, 1))
    return store


_SYNTHETIC_TYPES = (
    ("pdf", "application/pdf", _PDF),
    ("epub", "application/epub+zip", _EPUB),
    ("zip", "application/zip", _ZIP),
    ("png", "image/png", _PNG),
    ("mp4", "video/mp4", _MP4),
    ("txt", "text/plain", b""),
)


def synthetic_store(
    items: int = 2000,
    benefits: int = 20,
    *,
    clock: Callable[[], float] = time.time,
    max_size: int = 16 * 1024,
) -> Store:
    """One organization and one customer (SYNTHETIC_CUSTOMER_EXTERNAL_ID) holding `items` small files
    spread over `benefits` granted benefits, for benchmarks of paging and lookups."""
    if benefits < 1:
        raise ValueError("benefits must be at least 1")
    store = Store(clock=clock)
    org = store.add_organization("Synthetic Supply", "synthetic-supply")
    customer = store.add_customer(
        org, "bench@example.com", "Bench Customer", external_id=SYNTHETIC_CUSTOMER_EXTERNAL_ID
    )
    files_by_benefit: list[list[str]] = [[] for _ in range(benefits)]
    for index in range(items):
        extension, mime, header = _SYNTHETIC_TYPES[index % len(_SYNTHETIC_TYPES)]
        size = 200 + (index * 7919) % max(1, max_size - 200)
        blob = Blob(size, seed=f"synthetic:{index}", header=header, text=extension == "txt")
        file = store.add_file(org, f"item-{index:05d}.{extension}", mime, blob)
        files_by_benefit[index % benefits].append(file.id)
    start = _at(2024, 1, 1)
    for number, file_ids in enumerate(files_by_benefit):
        benefit = store.add_benefit(org, f"Bundle {number + 1:03d}", [store.files[f] for f in file_ids])
        store.grant(customer, benefit, start + number * 86_400)
    return store
