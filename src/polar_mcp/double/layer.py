"""What the API and storage origins share: fault injection in front of the routes, and the request log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
import anyio.lowlevel
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send

from polar_mcp.double.faults import Faults, GateFault
from polar_mcp.double.store import RequestRecord, Store

PORTAL_PAGE = "<!doctype html><html><head><title>Sign in to continue</title></head><body>Wi-Fi</body></html>"


class ConnectionDroppedError(ConnectionError):
    """Raised in place of a dropped connection when no real socket is there to drop (ASGI in-process)."""


class FaultyApp(Starlette):
    """A Starlette app whose outermost layer applies the store's faults and logs each request.

    Subclasses say how an injected server error reads on their origin, and may add headers to every
    answer or leave some paths out of the faults and the log.
    """

    keeps_query = True
    """Whether the log keeps query strings (not where they carry a signature)."""

    def __init__(
        self,
        store: Store,
        routes: list[BaseRoute],
        exception_handlers: Mapping[Any, Callable[..., Any]],
    ) -> None:
        self.store = store
        super().__init__(routes=routes, exception_handlers=dict(exception_handlers))

    def exempt(self, path: str) -> bool:
        """Whether `path` bypasses faults and the log (the double's own admin routes)."""
        return False

    def server_error(self, status: int) -> Response:
        """The answer to an injected `status` (5xx)."""
        raise NotImplementedError

    def rate_limited(self, retry_after: int) -> Response:
        """The answer to an injected 429."""
        return Response(status_code=429, headers={"Retry-After": str(retry_after)})

    def stamp(self, scope: Scope, send: Send) -> Send:
        """A `send` adding this origin's headers to every answer."""
        return send

    def record_path(self, path: str) -> str:
        """The path as the log keeps it (nothing secret)."""
        return path

    async def before_routes(self, scope: Scope) -> Response | None:
        """An answer that pre-empts routing, once the faults let the request through."""
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or self.exempt(path):
            await super().__call__(scope, receive, send)
            return
        recorded = False

        async def recording_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # Logged before the answer leaves: a client holding its answer finds the request logged.
                self.store.record(self._record(scope, message["status"]))
                recorded = True
            await send(message)

        self.store.request_started()
        try:
            await self._serve(scope, receive, self.stamp(scope, recording_send), send)
        finally:
            self.store.request_ended()
            if not recorded:  # no answer at all (a dropped connection, a failure before the headers)
                self.store.record(self._record(scope, 0))

    async def _serve(self, scope: Scope, receive: Receive, send: Send, raw_send: Send) -> None:
        faults = self.store.faults
        # A request's fate is decided as it arrives, before any latency: one its client gave up on
        # while it waited must not take a fault set meanwhile for the requests that follow.
        fault: GateFault | None = faults.take_gate_fault()
        if fault is None and faults.roll_error():
            fault = "errors_next"
        if faults.latency:
            await anyio.sleep(faults.latency)
        response: Response | None = None
        if fault == "drop_next":
            await drop_connection(raw_send)
            return
        if fault == "non_json_next":
            response = HTMLResponse(PORTAL_PAGE)
        elif fault == "rate_limit_next":
            response = self.rate_limited(faults.retry_after)
        elif fault == "errors_next":
            response = self.server_error(faults.error_status)
        else:
            response = await self.before_routes(scope)
        if response is not None:
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, _with_body_faults(send, raw_send, faults))

    def _record(self, scope: Scope, status: int) -> RequestRecord:
        query = scope.get("query_string", b"").decode("latin-1")
        token = bearer(Headers(scope=scope))
        prefix = None if token is None else token[:10] if token.startswith("polar_") else "(opaque)"
        return RequestRecord(
            scope["method"], self.record_path(scope["path"]), query if self.keeps_query else "", prefix, status
        )


def bearer(headers: Headers) -> str | None:
    """The bearer token of a request (any case of the scheme, as Polar accepts), if it has one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def drop_connection(raw_send: Send) -> None:
    """Close the client's connection without answering."""
    # ASGI has no message for this, so reach uvicorn's transport through its bound `send`
    # (a RequestResponseCycle method); without one (in-process ASGI) raise instead.
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise ConnectionDroppedError("the Polar double dropped this connection (fault injection)")
    transport.abort()
    # Let uvicorn see the connection lost before the app returns; otherwise it logs an error and
    # tries to send a 500 on the dead socket.
    for _ in range(10):
        if getattr(cycle, "disconnected", True):
            break
        await anyio.lowlevel.checkpoint()


def _content_length(message: Message) -> int | None:
    for key, value in message.get("headers", []):
        if key.lower() == b"content-length":
            return int(value)
    return None


def _with_body_faults(send: Send, raw_send: Send, faults: Faults) -> Send:
    """A `send` that applies `truncate_next` or `cut_next` to an answer with a body.

    Truncated: half the body, with a Content-Length to match. Cut: the headers and half the body, then
    the connection is dropped.
    """
    fault: Literal["truncate_next", "cut_next"] | None = None
    left = 0
    done = False

    async def faulty_send(message: Message) -> None:
        nonlocal fault, left, done
        if done:
            return
        if message["type"] == "http.response.start":
            length = _content_length(message)
            fault = next((f for f in ("truncate_next", "cut_next") if length and faults.take(f)), None)
            left = (length or 0) // 2
            if fault == "truncate_next":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
                message = {**message, "headers": [*headers, (b"content-length", str(left).encode())]}
            await send(message)
            return
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if fault is None or (len(body) < left and more_body):
            left -= len(body)
            await send(message)
            return
        done = True
        await send({"type": "http.response.body", "body": body[:left], "more_body": fault == "cut_next"})
        if fault == "cut_next":
            await drop_connection(raw_send)

    return faulty_send
