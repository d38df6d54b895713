"""Shared constants and helpers for the double's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2

from polar_mcp.double.app import create_app
from polar_mcp.double.storage import create_storage_app
from polar_mcp.double.store import Store

BASE_URL = "http://polar.test"
STORAGE_URL = "http://storage.test"
LIST = "/v1/customer-portal/downloadables/"
GRANTS = "/v1/customer-portal/benefit-grants/"
INTROSPECT = "/v1/customer-portal/customer-session/introspect"
SESSIONS = "/v1/customer-sessions/"
PORTAL = "/v1/customer-portal/"
REQUEST_CODE = PORTAL + "customer-session/request"
AUTHENTICATE = PORTAL + "customer-session/authenticate"
USER = PORTAL + "customer-session/user"
ME = PORTAL + "customers/me"
CUSTOMERS = "/v1/customers/"
MEMBERS = "/v1/members/"
ADMIN = "/__double__/"

ADA_FILES = [
    "chapter-12-draft.pdf",
    "ferris-dawn-3840x2160.png",
    "ferris-dusk-2560x1440.png",
    "01-futures-and-wakers.mp4",
    "02-inside-the-tokio-runtime.mp4",
    "01-futures-and-wakers.srt",
    "async-course-code.zip",
    "README.md",
    "rust-in-practice.pdf",
    "rust-in-practice.epub",
    "errata.txt",
]
"""Ada's downloadables, newest grant first; hidden files (unfinished upload, malware) left out."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def asgi_client(store: Store) -> AsyncIterator[httpx2.AsyncClient]:
    """An httpx2 client talking to the double in-process: its API, and its storage on another origin."""
    transport = httpx2.ASGITransport(app=create_app(store, STORAGE_URL))
    storage = httpx2.ASGITransport(app=create_storage_app(store))
    async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL, mounts={STORAGE_URL: storage}) as client:
        yield client


def benefit_id(store: Store, description: str) -> str:
    return next(b.id for b in store.benefits.values() if b.description == description)
