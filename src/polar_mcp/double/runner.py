"""Run an ASGI app (the double, or any other) over real loopback HTTP, in a background thread."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from polar_mcp.double.app import create_app
from polar_mcp.double.storage import create_storage_app
from polar_mcp.double.store import Store


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that says when it accepts connections, so nothing has to poll for it."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class ServingThread:
    """An app served on a loopback port from its own thread and event loop, until `stop()`."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lifespan: Literal["on", "off"] = "off",
        timeout: float = 15.0,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        bound_port: int = self._socket.getsockname()[1]
        # log_config=None leaves logging to the host process and access_log=False keeps uvicorn off
        # stdout, which is the MCP wire on stdio.
        config = uvicorn.Config(
            app, log_config=None, access_log=False, http="h11", ws="none", loop="asyncio", lifespan=lifespan
        )
        self._server = _ReadyServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="loopback-server", daemon=True
        )
        self._thread.start()
        if not self._server.ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"the server did not start on {host}:{bound_port}")
        netloc = f"[{host}]" if family == socket.AF_INET6 else host
        self.base_url = f"http://{netloc}:{bound_port}"
        """For example `http://127.0.0.1:54321`, without a trailing slash."""

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        # force_exit skips waiting for idle keep-alive connections that clients never close.
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


class RunningDouble:
    """A double serving on two loopback ports (its API, and its storage as S3 is another host) until
    `stop()` (or the end of a `with` block)."""

    def __init__(self, store: Store, api: ServingThread, storage: ServingThread) -> None:
        self.store = store
        self.base_url = api.base_url
        """For example `http://127.0.0.1:54321`, without a trailing slash."""
        self.storage_url = storage.base_url
        """The origin that download links redirect to."""
        self._servers = (api, storage)

    def stop(self) -> None:
        """Stop serving and wait for the threads to end."""
        for serving in self._servers:
            serving.stop()

    def __enter__(self) -> RunningDouble:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_double(store: Store, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> RunningDouble:
    """Serve `store` on `host:port` (port 0: a free one), its storage on another free port of `host`, and
    return once both accept connections."""
    storage = ServingThread(create_storage_app(store), host, timeout=timeout)
    try:
        api = ServingThread(create_app(store, storage.base_url), host, port, timeout=timeout)
    except BaseException:
        storage.stop()
        raise
    return RunningDouble(store, api, storage)
