"""Helpers for the launcher tests: tiny SCGI, FastCGI and AJP clients that
send what Apache 2.4's mod_proxy_scgi, mod_proxy_fcgi and mod_proxy_ajp send
(observed on a real Apache 2.4), small WSGI test apps and a handle on a
launcher subprocess."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import types
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

LAUNCHER_SOURCE = Path(__file__).resolve().parents[2] / "roles/scgi_worker/files/launcher"
# The launcher as hosts get it: the one-file zipapp build.py makes, built once per test run.
LAUNCHER = Path(tempfile.mkdtemp(prefix="pyhost-scgi-launcher-")) / "pyhost-scgi-launcher"
subprocess.run([sys.executable, str(LAUNCHER_SOURCE / "build.py"), str(LAUNCHER)], check=True)
atexit.register(shutil.rmtree, LAUNCHER.parent, True)
# The pure parts are also imported and tested directly (test_launcher_parts.py).
sys.path.insert(0, str(LAUNCHER_SOURCE))


# The collection as its modules import their module_utils: ansible_collections.pyhost.scgi (a link to this tree).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))


def plugin(path: str) -> types.ModuleType:
    """A plugin of the collection imported from its file (path under plugins/), as the unit tests call it."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, Path(__file__).resolve().parents[2] / "plugins" / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Upper bound for anything a test waits for; never reached when things work.
TIMEOUT = 10.0

PROTOCOLS = ["scgi", "fcgi", "ajp"]

TEST_APPS = textwrap.dedent('''
    import json, os, threading, time, uuid
    from urllib.parse import parse_qs

    def _query(environ):
        return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}

    def _json(start_response, data):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(data).encode()]

    def echo(environ, start_response):
        """The str part of environ, the request body and the pid, as JSON."""
        size = int(environ.get("CONTENT_LENGTH") or 0)
        data = {k: v for k, v in environ.items() if isinstance(v, str)}
        data["body"] = environ["wsgi.input"].read(size).decode("latin-1")
        data["pid"] = os.getpid()
        return _json(start_response, data)

    def sleep(environ, start_response):
        """Touch ?mark=PATH, then sleep ?seconds=S."""
        query = _query(environ)
        open(query["mark"], "w").close()
        time.sleep(float(query["seconds"]))
        return _json(start_response, {"pid": os.getpid()})

    def moved(environ, start_response):
        """A redirect with a path-only Location, as Django sends them."""
        start_response("302 Found", [("Location", environ["SCRIPT_NAME"] + "/target?x=1")])
        return [b""]

    def big(environ, start_response):
        """?size=N bytes, in 1 MiB pieces."""
        size = int(_query(environ)["size"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return (b"x" * min(1 << 20, size - start) for start in range(0, size, 1 << 20))

    def boom(environ, start_response):
        """An application error."""
        return [str(1 / 0).encode()]

    def rendezvous(environ, start_response):
        """Wait until ?n=N requests are inside the app at once (or ?timeout=T)."""
        query = _query(environ)
        directory, n = query["dir"], int(query["n"])
        open(os.path.join(directory, uuid.uuid4().hex), "w").close()
        deadline = time.monotonic() + float(query["timeout"])
        while len(os.listdir(directory)) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return _json(start_response, {"pid": os.getpid(), "thread": threading.get_ident(),
                                      "met": len(os.listdir(directory)) >= n})
''')


@dataclass
class Response:
    status: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        assert self.status.startswith("200"), (self.status, self.body)
        return json.loads(self.body)


Address = str | tuple[str, int]


def connect(address: Address, timeout: float) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def parse_cgi_response(raw: bytes) -> Response:
    """A CGI-style response (Status: header, blank line, body): SCGI, FastCGI."""
    head, _blank_line, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    return Response(fields.pop("Status", ""), fields, payload)


def cgi_params(uri: str, method: str, body: bytes) -> list[tuple[bytes, bytes]]:
    """What mod_proxy_scgi and mod_proxy_fcgi both send: SCRIPT_NAME is the
    whole decoded path, REQUEST_URI and QUERY_STRING are raw, no PATH_INFO."""
    path, _question_mark, query = uri.partition("?")
    params = [
        (b"HTTP_HOST", b"blog.example.org"),
        (b"SERVER_NAME", b"blog.example.org"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REQUEST_METHOD", method.encode()),
        (b"QUERY_STRING", query.encode()),
        (b"REQUEST_URI", uri.encode()),
        (b"SCRIPT_NAME", urllib.parse.unquote_to_bytes(path)),
    ]
    if body:
        params.append((b"CONTENT_TYPE", b"application/octet-stream"))
    return params


def scgi_request(
    address: Address,
    uri: str = "/",
    method: str = "GET",
    body: bytes = b"",
    script_name: bytes | None = None,
    path_info: bytes | None = None,
    timeout: float = TIMEOUT,
) -> Response:
    """One request, framed like mod_proxy_scgi: CONTENT_LENGTH first, SCGI=1,
    then cgi_params(). Give script_name and path_info to frame it like
    mod_scgi's SCGIMount."""
    headers = [
        (b"CONTENT_LENGTH", str(len(body)).encode()),
        (b"SCGI", b"1"),
        *cgi_params(uri, method, body),
    ]
    if script_name is not None:
        headers = [(n, script_name if n == b"SCRIPT_NAME" else v) for n, v in headers]
    if path_info is not None:
        headers.append((b"PATH_INFO", path_info))
    raw = b"".join(name + b"\0" + value + b"\0" for name, value in headers)
    with connect(address, timeout) as sock:
        sock.sendall(str(len(raw)).encode() + b":" + raw + b"," + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return parse_cgi_response(b"".join(chunks))


# FastCGI (the FastCGI 1.0 specification; flags and records as mod_proxy_fcgi sends them)
FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = (
    1,
    3,
    4,
    5,
    6,
)
FCGI_STDERR, FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT = 7, 9, 10
FCGI_RESPONDER = 1


def fcgi_record(rtype: int, content: bytes = b"", request_id: int = 1) -> bytes:
    padding = -len(content) % 8
    header = struct.pack("!BBHHBx", 1, rtype, request_id, len(content), padding)
    return header + content + b"\0" * padding


def fcgi_read_record(sock: socket.socket) -> tuple[int, bytes]:
    _version, rtype, _request_id, length, padding = struct.unpack("!BBHHBx", recv_exactly(sock, 8))
    content = recv_exactly(sock, length + padding)[:length]
    return rtype, content


def fcgi_pairs(pairs: list[tuple[bytes, bytes]]) -> bytes:
    def size(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack("!L", n | 0x80000000)

    return b"".join(size(len(n)) + size(len(v)) + n + v for n, v in pairs)


def fcgi_request(
    address: Address,
    uri: str = "/",
    method: str = "GET",
    body: bytes = b"",
    timeout: float = TIMEOUT,
) -> Response:
    """One request, framed like mod_proxy_fcgi: BEGIN_REQUEST (responder, no
    FCGI_KEEP_CONN), PARAMS as cgi_params() plus CONTENT_LENGTH with a body,
    an empty PARAMS, STDIN records ending with an empty one; then STDOUT
    until END_REQUEST."""
    params = cgi_params(uri, method, body)
    if body:
        params.append((b"CONTENT_LENGTH", str(len(body)).encode()))
    params.append((b"SCRIPT_FILENAME", b"proxy:fcgi://127.0.0.1:4000" + params[-1][1]))
    stdin = [body[i : i + 65528] for i in range(0, len(body), 65528)]
    records = [
        fcgi_record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", FCGI_RESPONDER, 0)),
        fcgi_record(FCGI_PARAMS, fcgi_pairs(params)),
        fcgi_record(FCGI_PARAMS),
        *(fcgi_record(FCGI_STDIN, chunk) for chunk in stdin),
        fcgi_record(FCGI_STDIN),
    ]
    stdout = []
    with connect(address, timeout) as sock:
        sock.sendall(b"".join(records))
        while (record := fcgi_read_record(sock))[0] != FCGI_END_REQUEST:
            if record[0] == FCGI_STDOUT:
                stdout.append(record[1])
    return parse_cgi_response(b"".join(stdout))


# AJP 1.3 (Tomcat's AJP13 protocol reference), as mod_proxy_ajp speaks it
AJP_METHODS = {"GET": 2, "POST": 4}
AJP_FORWARD_REQUEST = 2
AJP_SEND_BODY_CHUNK, AJP_SEND_HEADERS, AJP_END_RESPONSE, AJP_GET_BODY_CHUNK = 3, 4, 5, 6
AJP_RESPONSE_HEADERS = [
    "", "Content-Type", "Content-Language", "Content-Length", "Date",
    "Last-Modified", "Location", "Set-Cookie", "Set-Cookie2",
    "Servlet-Engine", "Status", "WWW-Authenticate",
]  # fmt: skip
AJP_MAX_CHUNK = 8186  # what mod_proxy_ajp sends at most per body packet


def ajp_string(value: bytes | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    return struct.pack(">H", len(value)) + value + b"\0"


def ajp_packet(data: bytes) -> bytes:
    """A packet from the web server to the container."""
    return b"\x12\x34" + struct.pack(">H", len(data)) + data


def ajp_read_packet(sock: socket.socket) -> bytes:
    """A packet from the container: 'AB', length, data."""
    prefix, length = struct.unpack(">2sH", recv_exactly(sock, 4))
    assert prefix == b"AB", prefix
    return recv_exactly(sock, length)


def ajp_forward_request(
    uri: str, method: str, body: bytes, ssl_key_size: int | None = None
) -> bytes:
    """FORWARD_REQUEST as mod_proxy_ajp builds it for ProxyPass /blog/
    ajp://host/blog/: the request URI is the path still percent-encoded, the
    query is an attribute, then AJP_REMOTE_PORT and AJP_LOCAL_ADDR; behind
    mod_ssl, is_ssl and the SSL attributes too."""
    path, _question_mark, query = uri.partition("?")
    headers = [(b"\xa0\x0b", b"blog.example.org")]  # Host
    if body:
        headers += [
            (b"\xa0\x08", str(len(body)).encode()),  # Content-Length
            (b"\xa0\x07", b"application/octet-stream"),  # Content-Type
        ]
    attributes = b""
    if query:
        attributes += b"\x05" + ajp_string(query.encode())
    if ssl_key_size is not None:
        attributes += b"\x08" + ajp_string(b"TLS_AES_256_GCM_SHA384")
        attributes += b"\x0b" + struct.pack(">H", ssl_key_size)
        attributes += b"\x0a" + ajp_string(b"AJP_SSL_PROTOCOL") + ajp_string(b"TLSv1.3")
    attributes += b"\x0a" + ajp_string(b"AJP_REMOTE_PORT") + ajp_string(b"50490")
    attributes += b"\x0a" + ajp_string(b"AJP_LOCAL_ADDR") + ajp_string(b"127.0.0.1")
    return ajp_packet(
        bytes([AJP_FORWARD_REQUEST, AJP_METHODS[method]])
        + ajp_string(b"HTTP/1.1")
        + ajp_string(path.encode())
        + ajp_string(b"127.0.0.1")  # remote_addr
        + ajp_string(None)  # remote_host
        + ajp_string(b"blog.example.org")  # server_name
        + struct.pack(
            ">HBH", 443 if ssl_key_size else 80, ssl_key_size is not None, len(headers)
        )
        + b"".join(name + ajp_string(value) for name, value in headers)
        + attributes
        + b"\xff"
    )


def ajp_body_chunk(body: bytes) -> bytes:
    return ajp_packet(struct.pack(">H", len(body)) + body if body else b"")


def ajp_exchange(
    sock: socket.socket, uri: str, method: str, body: bytes, **kwargs
) -> tuple[Response, bool]:
    """Send one request; return the response and END_RESPONSE's reuse flag."""
    # Like mod_proxy_ajp, the first body chunk goes right after the request.
    sock.sendall(
        ajp_forward_request(uri, method, body, **kwargs)
        + (ajp_body_chunk(body[:AJP_MAX_CHUNK]) if body else b"")
    )
    body = body[AJP_MAX_CHUNK:]
    status, headers, payload = "", {}, []
    while (packet := ajp_read_packet(sock))[0] != AJP_END_RESPONSE:
        if packet[0] == AJP_SEND_HEADERS:
            status, headers = ajp_parse_headers(packet)
        elif packet[0] == AJP_SEND_BODY_CHUNK:
            (size,) = struct.unpack(">H", packet[1:3])
            payload.append(packet[3 : 3 + size])
        elif packet[0] == AJP_GET_BODY_CHUNK:
            (size,) = struct.unpack(">H", packet[1:3])
            size = min(size, AJP_MAX_CHUNK)
            sock.sendall(ajp_body_chunk(body[:size]))
            body = body[size:]
    return Response(status, headers, b"".join(payload)), packet[1:2] == b"\x01"


def ajp_parse_headers(packet: bytes) -> tuple[str, dict[str, str]]:
    pos = 1

    def string() -> str:
        nonlocal pos
        (size,) = struct.unpack(">H", packet[pos : pos + 2])
        value = packet[pos + 2 : pos + 2 + size].decode("latin-1")
        pos += size + 3
        return value

    (code,) = struct.unpack(">H", packet[pos : pos + 2])
    pos += 2
    status = f"{code} {string()}"
    (count,) = struct.unpack(">H", packet[pos : pos + 2])
    pos += 2
    headers = {}
    for _header in range(count):
        if packet[pos] == 0xA0:
            name = AJP_RESPONSE_HEADERS[packet[pos + 1]]
            pos += 2
        else:
            name = string()
        headers[name] = string()
    return status, headers


def ajp_request(
    address: Address,
    uri: str = "/",
    method: str = "GET",
    body: bytes = b"",
    timeout: float = TIMEOUT,
    **kwargs,
) -> Response:
    """One request, as mod_proxy_ajp sends it (see ajp_forward_request)."""
    with connect(address, timeout) as sock:
        return ajp_exchange(sock, uri, method, body, **kwargs)[0]


CLIENTS: dict[str, Callable[..., Response]] = {
    "scgi": scgi_request,
    "fcgi": fcgi_request,
    "ajp": ajp_request,
}


def wait_until(predicate, timeout: float = TIMEOUT, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat_fields[1]) == pid:
                found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class NotifyListener:
    """The systemd side of sd_notify: a datagram socket the launcher reports to."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(TIMEOUT)

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def close(self) -> None:
        self.sock.close()


class Launcher:
    """The real launcher in a subprocess, serving the test apps."""

    def __init__(
        self,
        workdir: Path,
        app: str,
        *args: str,
        bind: str | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
        notify_address: str | None = None,
        name: str = "app",
        protocol: str = "scgi",
        module: str = "testapps",
    ) -> None:
        self.protocol = protocol
        self.socket_path = str(workdir / f"{name}.sock")
        self.stderr_path = workdir / f"{name}.err"
        self.notify = NotifyListener(notify_address or str(workdir / f"{name}.notify"))
        command = [
            *(prefix or [sys.executable]),
            str(LAUNCHER),
            "--app",
            f"{module}:{app}",
            "--chdir",
            str(workdir),
            "--bind",
            bind or f"unix:{self.socket_path}",
            "--protocol",
            protocol,
            *args,
        ]
        environment = {
            **os.environ,
            "NOTIFY_SOCKET": self.notify.address,
            **(env or {}),
        }
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                command,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                pass_fds=pass_fds,
            )

    def wait_ready(self) -> Launcher:
        try:
            assert self.notify.receive().startswith("READY=1\nSTATUS=serving ")
        except TimeoutError:
            raise AssertionError(f"launcher not ready: {self.stderr()}") from None
        return self

    def request(
        self, uri: str = "/", address: Address | None = None, **kwargs
    ) -> Response:
        """A request in the launcher's protocol, framed as Apache frames it."""
        return CLIENTS[self.protocol](address or self.socket_path, uri, **kwargs)

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Signal the launcher; return its exit status and how long it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        returncode = self.proc.wait(TIMEOUT)
        return returncode, time.monotonic() - started

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid in child_pids(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self.notify.close()


def make_workdir() -> Path:
    # Short, because a unix socket path is limited to 107 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="scgi-", dir="/tmp"))
    (workdir / "testapps.py").write_text(TEST_APPS)
    return workdir


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = make_workdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def launch(workdir: Path) -> Iterator:
    """launch(app, *args, **kwargs) -> a started Launcher, cleaned up after the test."""
    started: list[Launcher] = []

    def start(app: str, *args: str, ready: bool = True, **kwargs) -> Launcher:
        launcher = Launcher(
            workdir, app, *args, name=f"launcher{len(started)}", **kwargs
        )
        started.append(launcher)
        return launcher.wait_ready() if ready else launcher

    yield start
    for launcher in started:
        launcher.close()
