"""Which server serves: one class per protocol and method, spelled out.

A server is, first to last in its method resolution order (each overrides
the next): the protocol's fixes (protocols.py), the pool (pools.py) and
flup's WSGIServer for that protocol and method. Each connection is served
by the protocol's connection fixes, the read deadline (deadline.py) and
flup's Connection.

This module imports flup: cli.run() imports it once flup's version is known
to be one the fixes were tested with.
"""

from __future__ import annotations

from typing import Any, Callable

from flup.server import (
    ajp,
    ajp_base,
    ajp_fork,
    fcgi,
    fcgi_base,
    fcgi_fork,
    scgi,
    scgi_base,
    scgi_fork,
)

from pyhost_scgi_launcher.deadline import ReadDeadline
from pyhost_scgi_launcher.pools import PoolServer, PreforkPool, ThreadedPool
from pyhost_scgi_launcher.protocols import (
    AjpConnectionFixes,
    AjpFixes,
    AjpRequestFixes,
    FastCGIConnectionFixes,
    FastCGIFixes,
)

# Connections and requests


class ScgiConnection(ReadDeadline, scgi_base.Connection):
    # A whole GET request in one recv() instead of one per digit of its length, and four more.
    read_ahead = 16384


class FastCGIConnection(FastCGIConnectionFixes, ReadDeadline, fcgi_base.Connection):
    pass


class AjpConnection(AjpConnectionFixes, ReadDeadline, ajp_base.Connection):
    pass


class AjpRequest(AjpRequestFixes, ajp_base.Request):
    pass


# Servers


class ScgiPreforkServer(PreforkPool, scgi_fork.WSGIServer):
    connection_class = ScgiConnection


class ScgiThreadedServer(ThreadedPool, scgi.WSGIServer):
    connection_class = ScgiConnection


class FastCGIPreforkServer(FastCGIFixes, PreforkPool, fcgi_fork.WSGIServer):
    connection_class = FastCGIConnection


class FastCGIThreadedServer(FastCGIFixes, ThreadedPool, fcgi.WSGIServer):
    connection_class = FastCGIConnection


class AjpPreforkServer(AjpFixes, PreforkPool, ajp_fork.WSGIServer):
    connection_class = AjpConnection
    requestClass = AjpRequest


class AjpThreadedServer(AjpFixes, ThreadedPool, ajp.WSGIServer):
    connection_class = AjpConnection
    requestClass = AjpRequest


SERVERS: dict[tuple[str, str], type[PoolServer]] = {
    ("scgi", "prefork"): ScgiPreforkServer,
    ("scgi", "threaded"): ScgiThreadedServer,
    ("fcgi", "prefork"): FastCGIPreforkServer,
    ("fcgi", "threaded"): FastCGIThreadedServer,
    ("ajp", "prefork"): AjpPreforkServer,
    ("ajp", "threaded"): AjpThreadedServer,
}


def build_server(
    protocol: str, method: str, application: Callable[..., Any], **options: Any
) -> PoolServer:
    """The server for protocol and method; options go to PoolServer."""
    return SERVERS[protocol, method](application, **options)
