"""What the model sees: compact structured results and short text, never raw API JSON.

Keys with no value are left out. Untrusted strings from Polar are neutralised here, in both the
structured and the text form, so neither can carry control characters or forged lines.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from polar_mcp.catalog import BenefitName, Listing
from polar_mcp.polar.models import Downloadable
from polar_mcp.polar.signin import mask_email
from polar_mcp.signin_store import PendingCode, SignedIn
from polar_mcp.untrusted import clean_text, has_control, human_size, utc_iso

if TYPE_CHECKING:
    # Types only: the sync engine (and the download engine under it) loads when a sync runs.
    from polar_mcp.download import SavedFile
    from polar_mcp.sync import Outcome, Plan, Planned

NAME_LIMIT = 200


class _Out(BaseModel):
    # Built on first use, not at import: a cold start to tools/list needs none of them (the tools'
    # output schemas are derived ahead of time, server.OUTPUT_SCHEMAS), and `prepare` builds them
    # all while the server idles.
    model_config = ConfigDict(frozen=True, defer_build=True)


def prepare() -> None:
    """Build every result model now, as its first use would (a warm-up does this while the server idles)."""
    for model in _Out.__subclasses__():
        model.model_rebuild()


class FileItem(_Out):
    """One file in a listing; `id` is what get_download_link takes."""

    id: str
    benefit_id: str
    benefit: str | None = None
    seller: str | None = None
    file_id: str
    name: str
    mime_type: str | None = None
    size_bytes: int
    size: str
    version: str | None = None
    last_modified_at: str | None = None
    sha256: str | None = None


class DownloadablesList(_Out):
    """A page of the customer's files."""

    items: list[FileItem]
    page: int
    limit: int
    total_count: int
    max_page: int
    has_more: bool


class DownloadLink(_Out):
    """A fresh signed link to one file; the URL is a secret that expires."""

    id: str
    file_id: str
    benefit_id: str
    benefit: str | None = None
    seller: str | None = None
    name: str
    url: str
    expires_at: str
    expires_in_seconds: int
    size_bytes: int
    mime_type: str | None = None
    sha256: str | None = None
    headers: dict[str, str] | None = None


class DownloadedFile(_Out):
    """Where a file was saved, and whether its checksum was verified."""

    path: str
    name: str
    size_bytes: int
    sha256: str
    verified: bool
    skipped: bool
    benefit: str | None = None
    seller: str | None = None


def sha256_hex(item: Downloadable) -> str | None:
    """The file's SHA-256 in lowercase hex; None if Polar gave none or a malformed one."""
    return item.file.sha256


def file_name(item: Downloadable) -> str:
    return clean_text(item.file.name, NAME_LIMIT) or "(unnamed file)"


def _handle(value: str) -> str:
    # Ids are UUIDs, so this changes nothing for Polar's real ones; a hostile id cannot forge lines.
    return clean_text(value, 100)


def benefit_keys(name: BenefitName | None) -> dict[str, str]:
    """The `benefit` and `seller` keys, present only when Polar told us them."""
    if name is None:
        return {}
    found = {"benefit": clean_text(name.name or "", 60), "seller": clean_text(name.seller or "", 60)}
    return {key: value for key, value in found.items() if value}


def file_item(item: Downloadable, names: Mapping[str, BenefitName]) -> FileItem:
    modified = item.file.last_modified_at
    return FileItem(
        id=_handle(item.id),
        benefit_id=_handle(item.benefit_id),
        **benefit_keys(names.get(item.benefit_id)),
        file_id=_handle(item.file.id),
        name=file_name(item),
        mime_type=clean_text(item.file.mime_type, 100) if item.file.mime_type else None,
        size_bytes=item.file.size,
        size=human_size(item.file.size),
        version=clean_text(item.file.version, 40) if item.file.version else None,
        last_modified_at=utc_iso(modified) if modified else None,
        sha256=sha256_hex(item),
    )


def downloadables_list(listing: Listing) -> DownloadablesList:
    return DownloadablesList(
        items=[file_item(item, listing.names) for item in listing.items],
        page=listing.page,
        limit=listing.limit,
        total_count=listing.total_count,
        max_page=listing.max_page,
        has_more=listing.has_more,
    )


def listing_text(result: DownloadablesList, *, query: str | None = None) -> str:
    """Files grouped under their benefit's name, one short line each, and how to get more."""
    searched = f" matching {clean_text(query, 60)!r}" if query else ""
    if not result.items:
        if result.total_count and result.page > result.max_page:
            return (
                f"Page {result.page} is past the end: {result.total_count} files{searched} fill "
                f"{result.max_page} page(s). Call again with page=1."
            )
        return f"No files{searched}." if searched else "No purchased files are available to this customer."
    first = (result.page - 1) * result.limit + 1
    last = first + len(result.items) - 1
    sellers = {item.seller for item in result.items if item.seller}
    seller = next(iter(sellers)) if len(sellers) == 1 else None
    source = f" from {seller}" if seller else ""
    page = f"page {result.page} of {result.max_page}"
    lines = [f"Files {first}–{last} of {result.total_count}{searched}{source} ({page}):"]
    for group in _by_benefit(result.items):
        lines.append(_group_line(group, show_seller=seller is None))
        lines.extend(_item_line(item) for item in group)
    if result.has_more:
        lines.append(f"More: call again with page={result.page + 1}.")
    return "\n".join(lines)


def _group_line(group: Sequence[FileItem], *, show_seller: bool) -> str:
    head = group[0]
    count = f"{len(group)} file{'s' if len(group) != 1 else ''}"
    if head.benefit is None:
        return f"Benefit {head.benefit_id} — {count}:"
    seller = f", from {head.seller}" if show_seller and head.seller else ""
    return f"{head.benefit}{seller} — {count} (benefit_id {head.benefit_id}):"


def _by_benefit(items: Sequence[FileItem]) -> list[list[FileItem]]:
    groups: dict[str, list[FileItem]] = {}
    for item in items:
        groups.setdefault(item.benefit_id, []).append(item)
    return list(groups.values())


def _item_line(item: FileItem) -> str:
    kind = f" · {item.mime_type}" if item.mime_type else ""
    version = f" · v{item.version}" if item.version else ""
    return f"- {item.name} · {item.size}{kind}{version} · id {item.id}"


def download_link(item: Downloadable, name: BenefitName | None, *, now: datetime) -> DownloadLink:
    expires = item.file.download.expires_at
    return DownloadLink(
        id=_handle(item.id),
        file_id=_handle(item.file.id),
        benefit_id=_handle(item.benefit_id),
        **benefit_keys(name),
        name=file_name(item),
        url=item.file.download.url,
        expires_at=utc_iso(expires),
        expires_in_seconds=max(0, int((expires - now).total_seconds())),
        size_bytes=item.file.size,
        mime_type=clean_text(item.file.mime_type, 100) if item.file.mime_type else None,
        sha256=sha256_hex(item),
        headers=_sendable(item.file.download.headers) or None,
    )


def _from(benefit: str | None, seller: str | None) -> str:
    parts = [part for part in (benefit, seller) if part]
    return f", from {' by '.join(parts)}" if parts else ""


def _sendable(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers Polar asks to send with the link, less any that no HTTP client could send as given."""
    return {k: v for k, v in headers.items() if not has_control(k) and not has_control(v) and k.strip() == k}


def link_text(link: DownloadLink) -> str:
    minutes = link.expires_in_seconds // 60
    lines = [
        f"Download link for {link.name} ({human_size(link.size_bytes)}){_from(link.benefit, link.seller)}:",
        link.url,
        f"Expires {link.expires_at} (in {minutes} min). Keep it private: anyone holding it can download "
        "the file, and each opening counts as a download.",
    ]
    if link.headers:
        lines.append(
            "Send these headers with the request: "
            + ", ".join(f"{clean_text(k, 60)}: {clean_text(v, 200)}" for k, v in link.headers.items())
        )
    return "\n".join(lines)


def ambiguous_text(message: str, candidates: Sequence[Downloadable]) -> str:
    lines = [message, "Candidates:"]
    lines.extend(f"- {file_name(item)} · id {_handle(item.id)}" for item in candidates)
    return "\n".join(lines)


def downloaded_text(saved: DownloadedFile) -> str:
    size = human_size(saved.size_bytes)
    if saved.skipped:
        # Without Polar's checksum, identity rests on polar-mcp's own record of what it saved.
        why = "SHA-256 matches" if saved.verified else "unchanged since polar-mcp saved it"
        return f"Already present, identical ({why}): {saved.path} ({size}). Nothing was downloaded."
    check = "SHA-256 verified" if saved.verified else "size checked; Polar gave no checksum to verify"
    return f"Saved {saved.name} ({size}) to {saved.path} — {check}."


class SignInState(_Out):
    """Where a sign-in stands: a code on its way, or who is signed in and until when. The e-mail is
    always masked."""

    status: Literal["code_sent", "signed_in"]
    seller: str
    seller_slug: str | None = None
    email: str
    name: str | None = None
    expires_at: str | None = None
    expires_in_seconds: int | None = None


def code_sent(pending: PendingCode) -> SignInState:
    return SignInState(
        status="code_sent",
        seller=pending.seller.name,
        seller_slug=pending.seller.slug or None,
        email=mask_email(pending.email),
    )


def signed_in_state(signed_in: SignedIn, *, now: datetime) -> SignInState:
    return SignInState(
        status="signed_in",
        seller=signed_in.seller.name,
        seller_slug=signed_in.seller.slug or None,
        email=signed_in.masked_email,
        name=clean_text(signed_in.name, 80) if signed_in.name else None,
        expires_at=utc_iso(signed_in.expires_at),
        expires_in_seconds=max(0, int((signed_in.expires_at - now).total_seconds())),
    )


def owner_only_note(signed_in: SignedIn) -> str:
    """A team member who does not own the team may see no files: grants go to the owner member."""
    if signed_in.kind == "member" and signed_in.role not in (None, "owner"):
        return " As a team member who does not own the team, they may see no files: grants go to the team's owner."
    return ""


class SyncCounts(_Out):
    """How many files a sync downloaded, found present, failed on, and the bytes it downloaded."""

    downloaded: int
    present: int
    failed: int
    bytes: int


class SyncedFile(_Out):
    """One file of a sync; `path` is relative to the sync's folder, `reason` says why it failed."""

    path: str
    name: str
    benefit: str
    size_bytes: int
    sha256: str | None = None
    verified: bool = False
    status: Literal["downloaded", "present", "failed"]
    reason: str | None = None


class SyncResult(_Out):
    """What a sync did, file by file; `gone` are kept files Polar no longer offers."""

    folder: str
    counts: SyncCounts
    files: list[SyncedFile]
    gone: list[str]


class PlannedCounts(_Out):
    """What a sync would do: files to fetch and their bytes, files present, files it cannot fetch."""

    to_fetch: int
    present: int
    failed: int
    bytes: int


class PlannedFile(_Out):
    """One file of a planned sync; `path` is relative to the sync's folder."""

    path: str
    name: str
    benefit: str
    size_bytes: int
    status: Literal["to_fetch", "present", "failed"]
    reason: str | None = None


class SyncPlan(_Out):
    """What a sync would fetch, with nothing fetched."""

    folder: str
    counts: PlannedCounts
    files: list[PlannedFile]
    gone: list[str]


def _relative(planned: "Planned", saved: "SavedFile | None") -> str:
    # A file is always saved in its benefit's folder, under its own name or the next free one.
    return f"{planned.folder}/{saved.name if saved is not None else planned.name}"


def sync_result(plan: "Plan", outcomes: "Sequence[Outcome]") -> SyncResult:
    files = [
        SyncedFile(
            path=_relative(outcome.planned, outcome.saved),
            name=clean_text(outcome.planned.name, NAME_LIMIT),
            benefit=outcome.planned.benefit,
            size_bytes=outcome.planned.size_bytes,
            sha256=outcome.saved.sha256 if outcome.saved else None,
            verified=outcome.saved.verified if outcome.saved else False,
            status=outcome.status,
            reason=clean_text(outcome.reason, 300) if outcome.reason else None,
        )
        for outcome in outcomes
    ]
    downloaded = [file for file in files if file.status == "downloaded"]
    counts = SyncCounts(
        downloaded=len(downloaded),
        present=sum(file.status == "present" for file in files),
        failed=sum(file.status == "failed" for file in files),
        bytes=sum(file.size_bytes for file in downloaded),
    )
    return SyncResult(folder=str(plan.root), counts=counts, files=files, gone=plan.gone)


def sync_plan(plan: "Plan") -> SyncPlan:
    files = [
        PlannedFile(
            path=_relative(planned, planned.present),
            name=clean_text(planned.name, NAME_LIMIT),
            benefit=planned.benefit,
            size_bytes=planned.size_bytes,
            status="failed" if planned.failure else "present" if planned.present else "to_fetch",
            reason=clean_text(planned.failure, 300) if planned.failure else None,
        )
        for planned in plan.files
    ]
    counts = PlannedCounts(
        to_fetch=sum(file.status == "to_fetch" for file in files),
        present=sum(file.status == "present" for file in files),
        failed=sum(file.status == "failed" for file in files),
        bytes=plan.bytes_to_fetch,
    )
    return SyncPlan(folder=str(plan.root), counts=counts, files=files, gone=plan.gone)


SYNC_TEXT_BUDGET = 1900
"""Bytes a sync's text may take, whatever the library's size: the structured result has every file."""
_SHOWN_FAILURES = 5


def sync_text(result: SyncResult) -> str:
    """A short summary, the first few failures and the files gone upstream, in under 2 KB."""
    counts = result.counts
    folder = clean_text(result.folder, 120)
    if not result.files and not result.gone:
        return f"No files to sync into {folder}."
    parts = [f"{counts.downloaded} downloaded ({human_size(counts.bytes)})", f"{counts.present} already present"]
    if counts.failed:
        parts.append(f"{counts.failed} failed")
    total = len(result.files)
    lines = [f"Synced {total} file{'s' if total != 1 else ''} into {folder}: {', '.join(parts)}."]
    tail = [_gone_line(result.gone)] if result.gone else []
    failed = [file for file in result.files if file.status == "failed"]
    if failed:
        lines.append("Failed:")
        used = sum(len(line.encode()) + 1 for line in lines + tail)
        shown = 0
        for file in failed[:_SHOWN_FAILURES]:
            line = clean_text(f"- {file.path}: {file.reason or 'failed'}", 200)
            # Room is kept for the "and N more" line.
            if used + len(line.encode()) + 1 + 40 > SYNC_TEXT_BUDGET:
                break
            lines.append(line)
            used += len(line.encode()) + 1
            shown += 1
        if len(failed) > shown:
            lines.append(f"- and {len(failed) - shown} more (every file is in the structured result).")
    return "\n".join(lines + tail)


def _gone_line(gone: Sequence[str]) -> str:
    shown = ", ".join(clean_text(path, 60) for path in gone[:3])
    more = f" and {len(gone) - 3} more" if len(gone) > 3 else ""
    count = f"{len(gone)} file{'s' if len(gone) != 1 else ''}"
    return f"No longer offered by Polar, kept on disk: {count} ({shown}{more})."
