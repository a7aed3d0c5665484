"""The listening socket: a Unix socket, TCP, or the one systemd passed."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Iterator

from pyhost_scgi_launcher import LauncherError
from pyhost_scgi_launcher.systemd import inherit_systemd_socket


@dataclass(frozen=True)
class BindAddress:
    kind: str  # "unix", "tcp" or "systemd"
    text: str  # as given, for messages
    path: str = ""
    host: str = ""
    port: int = 0


@contextlib.contextmanager
def listening(bind: BindAddress, mode: int) -> Iterator[socket.socket]:
    try:
        if bind.kind == "systemd":
            sock = inherit_systemd_socket()
        elif bind.kind == "unix":
            sock = listen_unix(bind.path, mode)
        else:
            sock = listen_tcp(bind.host, bind.port)
    except OSError as exc:
        raise LauncherError(
            f"cannot listen on {bind.text}: {exc.strerror or exc}"
        ) from None
    # Remember which file we created: a newer instance may have replaced it.
    created = os.stat(bind.path).st_ino if bind.kind == "unix" else None
    try:
        yield sock
    finally:
        sock.close()
        if created is not None:
            with contextlib.suppress(OSError):
                if os.stat(bind.path).st_ino == created:
                    os.unlink(bind.path)


def listen_unix(path: str, mode: int) -> socket.socket:
    remove_stale_unix_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created with no permissions, then opened up: the socket is never, even
    # briefly, reachable by more users than --socket-mode allows.
    old_umask = os.umask(0o777)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(socket.SOMAXCONN)
    return sock


def remove_stale_unix_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    # flup unlinks blindly, which would steal the address from a running server.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        if probe.connect_ex(path) in (0, errno.EAGAIN):
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    os.unlink(path)


def listen_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restart must not wait for old connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock
