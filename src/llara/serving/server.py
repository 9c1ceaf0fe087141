"""The HTTP server of ``llara serve``: uvicorn with a deadline for each request head.

uvicorn times nothing before a request's headers are complete, so :class:`GuardedH11Protocol` adds that
deadline and answers the errors the server itself raises in the service's JSON shape; ``server_options``
configures every server of the app with it (``llara serve``, :func:`running_server` for tests and
benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from llara.errors import LlaraError

HEADER_TIMEOUT_S = 10.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head and JSON bodies on the errors the
    server answers itself.

    uvicorn times nothing before a request's headers are complete: a client that opens a connection and
    sends part of a head holds the connection as long as it likes. Here a timer starts when the
    connection opens and again when each response is complete; unless a whole request head has arrived
    within ``header_timeout_s``, the client gets a 408 (or, having sent nothing, just the close).
    """

    header_timeout_s: float = HEADER_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head arrived whole and its request started
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        self._start_head_timer()  # before uvicorn reads a pipelined request, which stops it again
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self.logger.warning("A request head did not arrive within %g s; closing.", self.header_timeout_s)
            self._refuse(408, f"the request head did not arrive within {self.header_timeout_s:g} s")
        else:
            self.transport.close()

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` with ``{"detail": detail}`` and close: for a request the app never saw."""
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode())
        with contextlib.suppress(h11.LocalProtocolError):  # a response already under way cannot be replaced
            for event in (response, h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        self.transport.close()


def server_options(header_timeout_s: float = HEADER_TIMEOUT_S) -> dict[str, Any]:
    """uvicorn options for every server of this app (``llara serve``, ``running_server``): the h11
    protocol with a ``header_timeout_s`` deadline for each request head, and no WebSocket upgrades."""
    protocol = type(GuardedH11Protocol.__name__, (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})
    return {"http": protocol, "ws": "none"}


@contextlib.contextmanager
def running_server(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 30.0,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread (``port=0``: a free port); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **server_options(header_timeout_s)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise LlaraError(f"the server on {host}:{sock.getsockname()[1]} did not start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()
