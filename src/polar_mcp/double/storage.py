"""The double's storage: an S3-like origin of its own that serves presigned GETs of file contents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from polar_mcp.double.faults import S3_ERRORS
from polar_mcp.double.layer import FaultyApp
from polar_mcp.double.signing import BUCKET, storage_expiry, storage_signature
from polar_mcp.double.store import File, Store

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def create_storage_app(store: Store) -> StorageApp:
    """The storage origin as an ASGI app serving the files of `store`."""
    return StorageApp(store)


class StorageApp(FaultyApp):
    """Answers as S3 does: Range requests, XML errors, 403 for a refused signature or a deleted object."""

    keeps_query = False

    def __init__(self, store: Store) -> None:
        routes: list[BaseRoute] = [Route("/{bucket}/{key:path}", self.get_object, methods=["GET"])]
        super().__init__(store, routes, {404: _not_found, 405: _not_allowed})

    def server_error(self, status: int) -> Response:
        return s3_error("ServiceUnavailable" if status == 503 else "InternalError", status)

    async def get_object(self, request: Request) -> Response:
        faults = self.store.faults
        if faults.take("storage_errors_next"):
            return s3_error(faults.storage_error_code)
        params = dict(request.query_params)
        signature = params.get("X-Amz-Signature", "")
        expected = storage_signature(self.store.secret, request.url.path, params)
        if not signature or signature != expected:
            return s3_error("SignatureDoesNotMatch")
        if storage_expiry(params) <= self.store.now():
            return s3_error("AccessDenied", message="Request has expired")
        if request.path_params["bucket"] != BUCKET:
            return s3_error("NoSuchBucket")
        file = self._object(request.path_params["key"])
        if file is None:
            return s3_error("NoSuchKey")
        if file.deleted:
            return s3_error("AccessDenied")
        return self._object_answer(file, request, params)

    def _object(self, key: str) -> File | None:
        _, _, rest = key.partition("/")
        file = self.store.files.get(rest.partition("/")[0])
        return file if file is not None and file.key == key else None

    def _object_answer(self, file: File, request: Request, params: dict[str, str]) -> Response:
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": params.get("response-content-disposition", "attachment"),
            "ETag": file.blob.digests.etag,
            "x-amz-version-id": file.storage_version,
        }
        if file.checksums:
            headers["x-amz-meta-polar-sha256-hex"] = file.blob.digests.sha256_hex
        media_type = params.get("response-content-type", file.mime_type)
        start, stop, status = 0, file.size, 200
        wanted = _RANGE.fullmatch(request.headers.get("range", "").strip())
        if wanted is not None and any(wanted.groups()):
            first, last = wanted.groups()
            if first:
                start, stop = int(first), min(int(last) + 1, file.size) if last else file.size
            else:
                start = max(file.size - int(last), 0)
            if start >= file.size or start >= stop:
                refused = s3_error("InvalidRange", 416, "The requested range is not satisfiable")
                refused.headers["Content-Range"] = f"bytes */{file.size}"
                return refused
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{file.size}"
        headers["Content-Length"] = str(stop - start)
        blocks = file.blob.range(start, stop) if status == 206 else file.blob.blocks()
        if self.store.faults.take("wrong_bytes_next"):
            blocks = _corrupted(blocks)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=media_type)
        return StreamingResponse(blocks, status_code=status, media_type=media_type, headers=headers)


def s3_error(code: str, status: int | None = None, message: str | None = None) -> Response:
    """An S3 error answer: its status and an XML body naming the code."""
    known_status, known_message = S3_ERRORS.get(code, (500, code))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message or known_message)}</Message>"
        "<RequestId>DOUBLE0000000000</RequestId></Error>"
    )
    return Response(body, status_code=status or known_status, media_type="application/xml")


def _corrupted(blocks: Iterator[bytes]) -> Iterator[bytes]:
    first = next(blocks, b"")
    if first:
        yield bytes([first[0] ^ 0xFF]) + first[1:]
    yield from blocks


async def _not_found(request: Request, exc: Exception) -> Response:
    return s3_error("NoSuchBucket" if request.url.path.count("/") < 2 else "NoSuchKey")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return s3_error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
