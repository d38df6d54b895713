"""Run the double over real loopback HTTP, in a background thread with its own event loop."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from polar_mcp.double.app import create_app
from polar_mcp.double.store import Store


class RunningDouble:
    """A double serving on a loopback port until `stop()` (or the end of a `with` block)."""

    def __init__(self, store: Store, server: uvicorn.Server, thread: threading.Thread, base_url: str) -> None:
        self.store = store
        self.base_url = base_url
        """For example `http://127.0.0.1:54321`, without a trailing slash."""
        self._server = server
        self._thread = thread

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        # force_exit skips waiting for idle keep-alive connections that clients never close.
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningDouble:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_double(store: Store, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> RunningDouble:
    """Serve `store` on `host:port` (port 0: a free one) and return once the server accepts connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port: int = sock.getsockname()[1]
    # log_config=None leaves logging to the host process and access_log=False keeps uvicorn off
    # stdout, which is the MCP wire on stdio.
    config = uvicorn.Config(
        create_app(store),
        log_config=None,
        access_log=False,
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="polar-double", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the Polar double did not start on {host}:{bound_port}")
        thread.join(0.005)
    netloc = f"[{host}]" if family == socket.AF_INET6 else host
    return RunningDouble(store, server, thread, f"http://{netloc}:{bound_port}")
