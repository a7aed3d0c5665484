"""Fixes for flup's FastCGI and AJP servers and connections (SCGI needs none
beyond the pools' and the environ's).

* FastCGI: FCGI_GET_VALUES was answered with nothing (names, bytes, were
  looked up under str keys); tracebacks went to the web server's error log
  only, not to the worker's; a stalled client held its worker for good.
* AJP: a connection over a Unix socket died at once (its peer address was
  formatted as HOST:PORT); every HTTPS request behind mod_ssl died (the
  SSL_KEY_SIZE attribute, decoded to str, was decoded again); the error page
  had status 200; a connection was kept for more requests, so an idle Apache
  connection held a worker for good.
"""

from __future__ import annotations

import contextlib

import socket
import urllib.parse
from typing import Any

from pyhost_scgi_launcher import log
from pyhost_scgi_launcher.deadline import DeadlineSocket

AJP_END_RESPONSE = b"\x05"


class FastCGIFixes:
    """flup.server.fcgi and fcgi_fork. mod_proxy_fcgi sends one request per
    connection (FCGI_KEEP_CONN off) unless ``enablereuse=on``, which would
    hold a worker for every connection Apache keeps: leave it off."""

    # flup's FastCGI servers have no logger; the launcher's code needs one.
    logger = log.getChild("fcgi")
    # flup reads FCGI_WEB_SERVER_ADDRS in run(), which the launcher replaces; as
    # with SCGI and AJP, the socket's address and mode decide who may connect.
    _web_server_addrs = None
    _max_children: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # FCGI_GET_VALUES: flup looked the names asked for (bytes) up under str
        # keys and answered none; its prefork limits were rlimits, not the pool.
        self.capability = {
            b"FCGI_MAX_CONNS": self._max_children,
            b"FCGI_MAX_REQS": self._max_children,
            b"FCGI_MPXS_CONNS": 0,
        }

    def error(self, req: Any) -> None:
        # flup sends the traceback to the web server's error log only.
        self.logger.exception("Exception caught from handler")
        super().error(req)  # type: ignore[misc]


class FastCGIConnectionFixes:
    """flup waits for each FastCGI record in select(), a second at a time with
    no end, and after a request for as long as the peer keeps its end open:
    a client that stalls would hold the worker. Both waits end at the
    connection's deadline (--read-timeout) here."""

    _sock: DeadlineSocket

    def process_input(self) -> None:
        self._sock.wait_readable()
        super().process_input()  # type: ignore[misc]

    def _cleanupSocket(self) -> None:
        self._sock.close_gently()


class AjpFixes:
    """flup.server.ajp and ajp_fork."""

    def _request_path(self, environ: dict[str, Any]) -> str:
        # mod_proxy_ajp sends the backend URL's path, percent-encoded (Apache
        # re-encodes it: %C3%A9 and %25 stay, %7E becomes ~); flup stores it
        # as REQUEST_URI, without the query (an attribute of its own).
        return urllib.parse.unquote_to_bytes(environ["REQUEST_URI"]).decode("latin-1")

    def error(self, request: Any) -> None:
        # flup's error page went out with status 200, as if it were content.
        request.startResponse(
            500, b"Internal Server Error", [(b"Content-Type", b"text/plain")]
        )
        request.write(b"Internal Server Error\n")


class AjpRequestFixes:
    def addAttribute(self, name: bytes, value: bytes | str) -> None:
        # flup decodes SSL_KEY_SIZE (a number) to str, then calls .decode() on
        # it: behind mod_ssl, every HTTPS request failed.
        if isinstance(value, str):
            value = value.encode("latin-1")
        super().addAttribute(name, value)  # type: ignore[misc]


class AjpConnectionFixes:
    """One request per connection, as with SCGI. Apache keeps AJP connections
    for reuse; each kept connection would hold a worker (process or thread)
    while idle, and no other request could reach that worker."""

    def __init__(
        self, sock: socket.socket, addr: Any, server: Any, timeout: Any
    ) -> None:
        # flup formats every peer as HOST:PORT: the empty address of a Unix
        # socket peer raised IndexError before the request was read.
        super().__init__(sock, addr or ("unix", 0), server, timeout)  # type: ignore[call-arg]

    def writePacket(self, pkt: Any) -> None:
        if pkt.data[:1] == AJP_END_RESPONSE:
            pkt.data = AJP_END_RESPONSE + b"\x00"  # reuse: no, Apache closes too
        super().writePacket(pkt)  # type: ignore[misc]

    def _forwardRequest(self, pkt: Any) -> None:
        # A peer gone, or dropped for taking none of the answer (deadline.py):
        # flup writes END_RESPONSE after the app's EPIPE, which fails again.
        with contextlib.suppress(BrokenPipeError):
            super()._forwardRequest(pkt)  # type: ignore[misc]
        raise EOFError  # ends flup's run(), which closes the connection
