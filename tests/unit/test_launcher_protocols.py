"""FastCGI and AJP: flup 1.0.3's defects in its servers for them, shown with
plain flup where it is cheap, and the launcher's fixes."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (
    FCGI_GET_VALUES,
    FCGI_GET_VALUES_RESULT,
    PROTOCOLS,
    TIMEOUT,
    ajp_exchange,
    ajp_request,
    connect,
    fcgi_pairs,
    fcgi_read_record,
    fcgi_record,
    wait_until,
)


def start_plain_flup(workdir: Path, code: str) -> subprocess.Popen:
    """Plain flup serving testapps.<PATH_INFO>, e.g. /echo, /boom."""
    program = textwrap.dedent(f"""
        import logging, os, socket, sys
        sys.path.insert(0, {str(workdir)!r})
        import testapps

        def app(environ, start_response):
            name = environ["PATH_INFO"].strip("/")
            return getattr(testapps, name)(environ, start_response)
    """) + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", program],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(TIMEOUT)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def can_connect(address: str | tuple[str, int]) -> bool:
    try:
        connect(address, TIMEOUT).close()
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------
# FastCGI


def get_values(address: str) -> dict[bytes, bytes]:
    """FCGI_GET_VALUES for the three names of the specification."""
    names = [
        (b"FCGI_MAX_CONNS", b""),
        (b"FCGI_MAX_REQS", b""),
        (b"FCGI_MPXS_CONNS", b""),
    ]
    with connect(address, TIMEOUT) as sock:
        sock.sendall(fcgi_record(FCGI_GET_VALUES, fcgi_pairs(names), request_id=0))
        rtype, content = fcgi_read_record(sock)
    assert rtype == FCGI_GET_VALUES_RESULT
    values, pos = {}, 0
    while pos < len(content):  # every name and value here is shorter than 128
        name_size, value_size = content[pos], content[pos + 1]
        pos += 2
        name, value = (
            content[pos : pos + name_size],
            content[pos + name_size : pos + name_size + value_size],
        )
        values[name] = value
        pos += name_size + value_size
    return values


def test_plain_flup_fcgi_get_values_answers_nothing(workdir: Path) -> None:
    path = str(workdir / "plain.sock")
    proc = start_plain_flup(
        workdir,
        f"""
        from flup.server.fcgi import WSGIServer
        WSGIServer(app, bindAddress={path!r}).run()
    """,
    )
    try:
        wait_until(lambda: can_connect(path), message="plain flup socket")
        assert get_values(path) == {}
    finally:
        stop(proc)


@pytest.mark.parametrize("method", ["prefork", "threaded"])
def test_fcgi_get_values_describes_the_pool(launch, method: str) -> None:
    launcher = launch(
        "echo", "--method", method, "--max-children", "3", protocol="fcgi"
    )
    assert get_values(launcher.socket_path) == {
        b"FCGI_MAX_CONNS": b"3",
        b"FCGI_MAX_REQS": b"3",
        b"FCGI_MPXS_CONNS": b"0",
    }
    assert launcher.request("/").json()["pid"]


# --------------------------------------------------------------------------
# AJP


@pytest.fixture
def plain_ajp(workdir: Path) -> Iterator[tuple[str, int]]:
    """Plain flup's threaded AJP server on TCP, the only socket it can bind."""
    address = ("127.0.0.1", free_port())
    proc = start_plain_flup(
        workdir,
        f"""
        from flup.server.ajp import WSGIServer
        WSGIServer(app, bindAddress={address!r}, loggingLevel=logging.CRITICAL).run()
    """,
    )
    wait_until(lambda: can_connect(address), message="plain flup AJP port")
    yield address
    stop(proc)


def test_plain_flup_ajp_dies_on_https_requests(plain_ajp: tuple[str, int]) -> None:
    assert ajp_request(plain_ajp, "/echo").json()["pid"]
    # mod_proxy_ajp behind mod_ssl sends SSL_KEY_SIZE: flup decodes it twice.
    with pytest.raises(EOFError):
        ajp_request(plain_ajp, "/echo", ssl_key_size=256)


def test_plain_flup_ajp_error_page_has_status_200(plain_ajp: tuple[str, int]) -> None:
    assert ajp_request(plain_ajp, "/boom").status == "200 Internal Server Error"


def test_plain_flup_ajp_keeps_the_connection(plain_ajp: tuple[str, int]) -> None:
    with connect(plain_ajp, TIMEOUT) as sock:
        response, reuse = ajp_exchange(sock, "/echo", "GET", b"")
        assert response.json()["pid"] and reuse
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # still open, holding its worker
            sock.recv(1)


def test_plain_flup_ajp_fails_on_a_unix_socket(workdir: Path) -> None:
    # flup binds AJP to TCP only; given a Unix socket (as the launcher does),
    # each connection dies formatting its peer address as HOST:PORT.
    path = str(workdir / "plain.sock")
    proc = start_plain_flup(
        workdir,
        f"""
        from flup.server.ajp import WSGIServer

        class UnixServer(WSGIServer):
            def _setupSocket(self):
                sock = socket.socket(socket.AF_UNIX)
                sock.bind({path!r})
                sock.listen()
                return sock

        UnixServer(app, loggingLevel=logging.CRITICAL).run()
    """,
    )
    try:
        wait_until(lambda: can_connect(path), message="plain flup socket")
        with pytest.raises((EOFError, TimeoutError)):
            ajp_request(path, "/echo", timeout=0.5)
    finally:
        stop(proc)


@pytest.mark.parametrize("method", ["prefork", "threaded"])
def test_ajp_https_over_a_unix_socket(launch, method: str) -> None:
    launcher = launch(
        "echo", "--method", method, "--script-name", "/blog", protocol="ajp"
    )
    environ = launcher.request("/blog/x", ssl_key_size=256).json()
    assert environ["SSL_KEY_SIZE"] == "256"
    assert environ["HTTPS"] == "on" and environ["wsgi.url_scheme"] == "https"
    assert environ["AJP_SSL_PROTOCOL"] == "TLSv1.3"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/blog", "/x")


@pytest.mark.parametrize("method", ["prefork", "threaded"])
def test_ajp_serves_one_request_per_connection(launch, method: str) -> None:
    launcher = launch("echo", "--method", method, "--max-children", "1", protocol="ajp")
    with connect(launcher.socket_path, TIMEOUT) as sock:
        response, reuse = ajp_exchange(sock, "/", "GET", b"")
        assert response.json()["pid"] and not reuse
        assert sock.recv(1) == b""  # closed: the worker is free again
    assert launcher.request("/").json()["pid"]


# --------------------------------------------------------------------------
# All protocols


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_application_error_is_a_500_logged_by_the_worker(launch, protocol: str) -> None:
    launcher = launch("boom", protocol=protocol)
    assert launcher.request("/").status.startswith("500 ")
    assert launcher.request("/").status.startswith("500 ")
    # FastCGI's flup sends the traceback to the web server only
    assert "ZeroDivisionError" in launcher.stderr()
