"""What a systemd service needs, without libsystemd: the socket passed by
socket activation (sd_listen_fds) and state notifications (sd_notify)."""

from __future__ import annotations

import os
import socket

from pyhost_scgi_launcher import LauncherError, log

SD_LISTEN_FDS_START = 3


def inherit_systemd_socket() -> socket.socket:
    fds = os.environ.get("LISTEN_FDS", "")
    if (
        os.environ.get("LISTEN_PID") != str(os.getpid())
        or not fds.isdigit()
        or int(fds) < 1
    ):
        raise LauncherError(
            "--bind systemd, but no socket was passed by systemd socket activation "
            "(LISTEN_PID/LISTEN_FDS unset or meant for another process)"
        )
    # Like sd_listen_fds(unset_environment=1): the app and its children must
    # not believe the socket is theirs.
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.set_inheritable(False)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        raise LauncherError(
            "the socket passed by systemd is not a listening stream socket "
            "(use ListenStream= and Accept=no)"
        )
    return sock


class SystemdNotifier:
    """sd_notify() without libsystemd: one datagram per state change."""

    def __init__(self, address: str | None) -> None:
        self.address = address  # as systemd gave it, to hand on at re-execution
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address

    @classmethod
    def from_environment(cls) -> SystemdNotifier:
        # Taken out of the environment so that the app (and anything it runs)
        # cannot send state changes for the service.
        return cls(os.environ.pop("NOTIFY_SOCKET", None))

    def notify(self, state: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", state, exc)
