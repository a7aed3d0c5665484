"""Helpers for the launcher tests: a tiny SCGI client framed like Apache's
mod_proxy_scgi, small WSGI test apps and a handle on a launcher subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

LAUNCHER = (
    Path(__file__).resolve().parents[2]
    / "roles/scgi_worker/files/pyhost_scgi_launcher.py"
)

# Upper bound for anything a test waits for; never reached when things work.
TIMEOUT = 10.0

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


def scgi_request(
    address: str | tuple[str, int],
    uri: str = "/",
    method: str = "GET",
    body: bytes = b"",
    script_name: bytes | None = None,
    path_info: bytes | None = None,
    timeout: float = TIMEOUT,
) -> Response:
    """One request, framed like mod_proxy_scgi: CONTENT_LENGTH first, SCGI=1,
    REQUEST_URI raw, SCRIPT_NAME the whole decoded path and no PATH_INFO.
    Give script_name and path_info to frame it like mod_scgi's SCGIMount."""
    path, _, query = uri.partition("?")
    headers: list[tuple[bytes, bytes]] = [
        (b"CONTENT_LENGTH", str(len(body)).encode()),
        (b"SCGI", b"1"),
        (b"HTTP_HOST", b"blog.example.org"),
        (b"SERVER_NAME", b"blog.example.org"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REQUEST_METHOD", method.encode()),
        (b"QUERY_STRING", query.encode()),
        (b"REQUEST_URI", uri.encode()),
        (
            b"SCRIPT_NAME",
            urllib.parse.unquote_to_bytes(path) if script_name is None else script_name,
        ),
    ]
    if path_info is not None:
        headers.append((b"PATH_INFO", path_info))
    if body:
        headers.append((b"CONTENT_TYPE", b"application/octet-stream"))
    raw = b"".join(name + b"\0" + value + b"\0" for name, value in headers)
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(str(len(raw)).encode() + b":" + raw + b"," + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    return Response(fields.pop("Status", ""), fields, payload)


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
    ) -> None:
        self.socket_path = str(workdir / f"{name}.sock")
        self.stderr_path = workdir / f"{name}.err"
        self.notify = NotifyListener(notify_address or str(workdir / f"{name}.notify"))
        command = [
            *(prefix or [sys.executable]),
            str(LAUNCHER),
            "--app",
            f"testapps:{app}",
            "--chdir",
            str(workdir),
            "--bind",
            bind or f"unix:{self.socket_path}",
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
            assert self.notify.receive() == "READY=1"
        except TimeoutError:
            raise AssertionError(f"launcher not ready: {self.stderr()}") from None
        return self

    def request(self, uri: str = "/", **kwargs) -> Response:
        return scgi_request(self.socket_path, uri, **kwargs)

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
