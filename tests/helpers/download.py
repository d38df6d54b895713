"""A scripted Polar link and storage server behind `httpx2.MockTransport`, for the download engine's tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2

from polar_mcp.download import DownloadRequest, SavedFile, download_file
from polar_mcp.download_record import RECORD_NAME

LINK = "https://api.polar.test/v1/customer-portal/downloadables/signed-token"
STORAGE = "https://storage.polar.test/org/report.pdf?X-Amz-Signature=abc"
BODY = bytes(range(256)) * 4096  # 1 MiB: several chunks and several progress steps
BODY_SHA = hashlib.sha256(BODY).hexdigest()
PLENTY = 1 << 40

Answer = Callable[[httpx2.Request], httpx2.Response]


def serve(body: bytes) -> Answer:
    """A storage server that honours `Range`, as S3 does."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        wanted = request.headers.get("Range")
        if wanted is None:
            return httpx2.Response(200, content=body)
        start = int(wanted.removeprefix("bytes=").removesuffix("-"))
        headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
        return httpx2.Response(206, headers=headers, content=body[start:])

    return answer


def streamed(*chunks: bytes, then: Exception | None = None) -> Answer:
    """A 200 without Content-Length whose body arrives in `chunks`, then optionally breaks."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if then is not None:
            raise then

    return lambda _: httpx2.Response(200, content=body())


def redirect(location: str, status: int = 302) -> Answer:
    return lambda _: httpx2.Response(status, headers={"Location": location})


@dataclass
class Polar:
    """The Polar link redirecting to storage; scripted answers are used once each, in order."""

    body: bytes = BODY
    link: list[Answer] = field(default_factory=list[Answer])
    storage: list[Answer] = field(default_factory=list[Answer])
    others: dict[str, Answer] = field(default_factory=dict[str, Answer])
    requests: list[httpx2.Request] = field(default_factory=list[httpx2.Request])

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        url = str(request.url)
        if url == LINK:
            return self.link.pop(0)(request) if self.link else redirect(STORAGE)(request)
        if url == STORAGE:
            return self.storage.pop(0)(request) if self.storage else serve(self.body)(request)
        return self.others[url](request)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))

    def hits(self, url: str) -> int:
        return sum(str(request.url) == url for request in self.requests)


def file_request(
    name: str = "report.pdf",
    body: bytes = BODY,
    *,
    sha256: str | None = "",
    headers: dict[str, str] | None = None,
    file_id: str | None = None,
    version: str | None = None,
    last_modified: str | None = None,
    storage_version: str | None = None,
) -> DownloadRequest:
    """`sha256=""` (the default) means Polar's checksum of `body`; None means Polar gives none."""
    return DownloadRequest(
        url=LINK,
        headers=headers or {},
        name=name,
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest() if sha256 == "" else sha256,
        file_id=file_id if file_id is not None else f"file-{name}",
        version=version,
        last_modified=last_modified,
        storage_version=storage_version,
    )


async def no_sleep(_: float) -> None:
    return None


async def fetch(polar: Polar, request: DownloadRequest, directory: Path, **options: object) -> SavedFile:
    options = {"free_space": lambda _: PLENTY, "sleep": no_sleep, **options}
    async with polar.client() as http:
        return await download_file(http, request, directory, **options)  # type: ignore[arg-type]


def listing(directory: Path) -> list[str]:
    """The folder's entries, less polar-mcp's record of what it saved there."""
    return sorted(entry for entry in os.listdir(directory) if entry != RECORD_NAME)


def download_in_process(directory: str, barrier: Barrier, results: Queue[tuple[str, bool]]) -> None:
    """In a child process: download one file without a checksum, holding its body until `barrier` is full.

    Every process at the barrier has looked in the folder and found nothing, so all of them fetch.
    """

    async def main() -> SavedFile:
        async def body() -> AsyncIterator[bytes]:
            await anyio.to_thread.run_sync(lambda: barrier.wait(timeout=60))
            yield BODY

        def handle(request: httpx2.Request) -> httpx2.Response:
            if str(request.url) == LINK:
                return httpx2.Response(302, headers={"Location": STORAGE})
            return httpx2.Response(200, content=body())

        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as http:
            return await download_file(
                http, file_request(sha256=None, file_id="f1"), Path(directory), free_space=lambda _: PLENTY
            )

    saved = anyio.run(main)
    results.put((str(saved.path), saved.skipped))
