"""Slow clients: a connection that does not deliver its request in time is
closed, so that a few stalled clients cannot hold every worker of an app."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from conftest import (
    FCGI_BEGIN_REQUEST,
    FCGI_PARAMS,
    FCGI_RESPONDER,
    FCGI_STDIN,
    PROTOCOLS,
    TIMEOUT,
    ajp_forward_request,
    cgi_params,
    connect,
    fcgi_pairs,
    fcgi_record,
)

# What two clients of each protocol send before they stall: headers cut short,
# and (SCGI) a request that announces a 1 MiB body and sends one byte of it.
STALLS = {
    "scgi": [b"70:CONTENT_LENGTH", b"50:CONTENT_LENGTH\x001048576\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00,x"],
    "fcgi": [fcgi_record(FCGI_BEGIN_REQUEST, b"\0\1\0\0\0\0\0\0")] * 2,
    "ajp": [b"\x12\x34\x01\x00"] * 2,
}


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the launcher ended the connection: EOF after what it sent (an error page, where the
    app was reading the body), or a reset (it left what the client sent unread)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("method", ["prefork", "threaded"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_clients_cannot_hold_the_workers(launch, protocol: str, method: str) -> None:
    launcher = launch("echo", "--method", method, "--max-children", "2", "--read-timeout", "1", protocol=protocol)
    started = time.monotonic()
    clients: list[socket.socket] = []
    try:
        for first_bytes in STALLS[protocol]:
            clients.append(connect(launcher.socket_path, TIMEOUT))
            clients[-1].sendall(first_bytes)
        # Both workers hold a stalled client; a real request is served once they are dropped.
        assert launcher.request("/fast", method="POST", body=b"hello").json()["body"] == "hello"
        assert time.monotonic() - started < TIMEOUT / 2
        assert all(closed_by_peer(client) for client in clients)
    finally:
        for client in clients:
            client.close()
    assert "closed a connection whose request did not arrive within 1 s" in launcher.stderr()


@pytest.mark.parametrize("method", ["prefork", "threaded"])
def test_the_read_timeout_does_not_limit_how_long_the_app_takes(launch, workdir: Path, method: str) -> None:
    launcher = launch("sleep", "--method", method, "--read-timeout", "1")
    assert launcher.request(f"/?seconds=2&mark={workdir / 'mark'}").json()["pid"] > 0


def request_bytes(protocol: str, uri: str) -> bytes:
    """A GET of URI as the web server frames it in each protocol."""
    if protocol == "scgi":
        raw = b"".join(name + b"\0" + value + b"\0"
                       for name, value in [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1"), *cgi_params(uri, "GET", b"")])
        return str(len(raw)).encode() + b":" + raw + b","
    if protocol == "fcgi":
        return b"".join([fcgi_record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", FCGI_RESPONDER, 0)),
                         fcgi_record(FCGI_PARAMS, fcgi_pairs(cgi_params(uri, "GET", b""))), fcgi_record(FCGI_PARAMS),
                         fcgi_record(FCGI_STDIN)])
    return ajp_forward_request(uri, "GET", b"")


@pytest.mark.parametrize("method", ["prefork", "threaded"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_peer_that_takes_none_of_a_large_answer_cannot_hold_a_worker(launch, protocol: str, method: str) -> None:
    """Behind a client that reads slowly or not at all, the web server stops taking the answer: the worker drops
    the connection after --read-timeout without progress, and serves the next request."""
    launcher = launch("big", "--method", method, "--max-children", "1", "--read-timeout", "1", protocol=protocol)
    started = time.monotonic()
    with connect(launcher.socket_path, TIMEOUT) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(request_bytes(protocol, "/?size=33554432"))
        # The only worker is busy with the stalled answer until it gives up on it.
        assert len(launcher.request("/?size=10").body) == 10
        assert time.monotonic() - started < TIMEOUT / 2
    assert "closed a connection that took none of the answer for 1 s" in launcher.stderr()
    assert "Traceback" not in launcher.stderr()
