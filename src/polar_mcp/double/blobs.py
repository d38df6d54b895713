"""Deterministic file contents: generated on demand, streamed in blocks, hashed once."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

BLOCK_SIZE = 64 * 1024

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
        header = self.header
        for index, start in enumerate(range(0, self.size, BLOCK_SIZE)):
            end = min(start + BLOCK_SIZE, self.size)
            if end <= len(header):
                yield header[start:end]
                continue
            block = self._filler(index)[: end - start]
            if start < len(header):
                block = header[start:] + block[len(header) - start :]
            yield block

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
    md5 = hashlib.md5(usedforsecurity=False)
    for block in blob.blocks():
        sha.update(block)
        md5.update(block)
    digest = sha.digest()
    return Digests(digest.hex(), base64.b64encode(digest).decode("ascii"), md5.hexdigest())
