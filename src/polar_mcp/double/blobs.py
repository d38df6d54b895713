"""Deterministic file contents: generated on demand, streamed in blocks, hashed once."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

BLOCK_SIZE = 64 * 1024
UPLOAD_PART_SIZE = 10_000_000
"""Polar uploads files to storage in parts of this size, which shapes the object's ETag."""

_WORDS = [
    "ferris",
    "borrow",
    "checker",
    "lifetime",
    "trait",
    "async",
    "await",
    "future",
    "executor",
    "crate",
    "module",
    "macro",
    "iterator",
    "closure",
    "pattern",
    "enum",
    "struct",
    "slice",
    "vector",
    "string",
    "reference",
    "ownership",
    "compile",
    "safe",
    "fast",
]


@dataclass(frozen=True)
class Digests:
    """Checksums as Polar reports them."""

    sha256_hex: str
    sha256_base64: str
    etag: str
    """The storage ETag of a multipart upload, quotes included: `"<md5 of the parts' md5s>-<parts>"`."""


@dataclass(frozen=True)
class Blob:
    """The bytes of one file: `header` (a magic number, or the whole text) then seeded filler up to `size`.

    Nothing is held in memory: every read regenerates the blocks, so a catalog of large files costs
    only its metadata.
    """

    size: int
    seed: str = ""
    header: bytes = b""
    text: bool = False

    @classmethod
    def literal(cls, data: bytes) -> Blob:
        """A blob whose whole content is `data`."""
        return cls(size=len(data), header=data)

    def blocks(self) -> Iterator[bytes]:
        """The content in blocks of at most BLOCK_SIZE bytes."""
        return self.range(0, self.size)

    def range(self, start: int, stop: int) -> Iterator[bytes]:
        """The bytes from `start` to `stop` (exclusive) in blocks of at most BLOCK_SIZE bytes."""
        stop = min(stop, self.size)
        for index in range(start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)):
            offset = index * BLOCK_SIZE
            block = self._block(index)
            yield block[max(start - offset, 0) : stop - offset]

    def _block(self, index: int) -> bytes:
        header = self.header
        start = index * BLOCK_SIZE
        end = min(start + BLOCK_SIZE, self.size)
        if end <= len(header):
            return header[start:end]
        block = self._filler(index)[: end - start]
        if start < len(header):
            block = header[start:] + block[len(header) - start :]
        return block

    def read(self) -> bytes:
        """The whole content at once (for small files and tests)."""
        return b"".join(self.blocks())

    @property
    def digests(self) -> Digests:
        """SHA-256 (hex and base64) and an S3-style single-part ETag (MD5 hex) of the content."""
        return _digests(self)

    def _filler(self, index: int) -> bytes:
        # One generator per block keeps any block computable on its own, so streaming never needs
        # the blocks before it.
        rng = random.Random(f"{self.seed}:{index}")  # noqa: S311 - deterministic content, not secrecy
        if not self.text:
            return rng.randbytes(BLOCK_SIZE)
        lines: list[str] = []
        length = 0
        while length < BLOCK_SIZE:
            line = " ".join(rng.choices(_WORDS, k=11)).capitalize() + ".\n"
            lines.append(line)
            length += len(line)
        return "".join(lines).encode("ascii")


# Keyed by the blob's value, so every store built from the same catalog shares one computation: a
# listing reports the checksums of every file on its page.
@lru_cache(maxsize=8192)
def _digests(blob: Blob) -> Digests:
    sha = hashlib.sha256()
    parts: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    room = UPLOAD_PART_SIZE
    for block in blob.blocks():
        sha.update(block)
        while block:
            part.update(block[:room])
            taken = min(room, len(block))
            block, room = block[taken:], room - taken
            if room == 0:
                parts.append(part.digest())
                part, room = hashlib.md5(usedforsecurity=False), UPLOAD_PART_SIZE
    if room < UPLOAD_PART_SIZE or not parts:
        parts.append(part.digest())
    etag = f'"{hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"'
    digest = sha.digest()
    return Digests(digest.hex(), base64.b64encode(digest).decode("ascii"), etag)
