"""--retry-load: an app that fails to import does not make the launcher exit.

Exiting would leave Apache's requests waiting in the socket's backlog while
systemd restarts the service. Instead the launcher reports ready with an
"unavailable:" status, answers every request 503 with Retry-After, and after
1, 2, 4 ... LOAD_RETRY_MAX seconds re-executes itself (same PID, same socket)
to import the app afresh.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable, NoReturn

from pyhost_scgi_launcher.systemd import SystemdNotifier

# The first retry after this many seconds, doubling up to the most.
LOAD_RETRY_FIRST = 1
LOAD_RETRY_MAX = 60
# Which import attempt this is, carried across re-executions.
LOAD_ATTEMPT_ENV = "PYHOST_SCGI_LOAD_ATTEMPT"
# Threads answering 503 while the app is unavailable: the answer is instant.
UNAVAILABLE_THREADS = 2


def load_attempt() -> int:
    value = os.environ.pop(LOAD_ATTEMPT_ENV, "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def retry_delay(attempt: int) -> int:
    """Seconds to answer 503 after import attempt number `attempt` failed."""
    return min(LOAD_RETRY_FIRST * 2 ** min(attempt - 1, 30), LOAD_RETRY_MAX)


def unavailable_app(retry_after: int) -> Callable[..., Any]:
    body = (
        b"503 Service Unavailable\n\n"
        b"The application failed to start; it is retried automatically.\n"
    )

    def unavailable(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Retry-After", str(retry_after)),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    return unavailable


def reexecute(
    sock: socket.socket, notifier: SystemdNotifier, environment: dict[str, str], attempt: int
) -> NoReturn:
    """Replace this process with a fresh launcher for the next attempt."""
    # --retry-load implies --bind systemd: the socket is still systemd's fd 3,
    # handed to the new image as at activation.
    os.set_inheritable(sock.fileno(), True)
    environment.update(
        LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), **{LOAD_ATTEMPT_ENV: str(attempt + 1)}
    )
    if notifier.address:
        environment["NOTIFY_SOCKET"] = notifier.address
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environment)
