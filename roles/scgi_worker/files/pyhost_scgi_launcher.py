#!/usr/bin/env python3
"""Serve one WSGI application with flup, under systemd.

Django removed ``manage.py runfcgi`` in 1.9; this small program replaces it
for any WSGI callable (Django, Flask, ...). The pyhost.scgi collection copies
it into each application's virtualenv as ``bin/pyhost-scgi-launcher`` and a
systemd unit (``Type=notify``, usually socket-activated) runs it. It speaks
SCGI, FastCGI or AJP 1.3, with a pool of processes (prefork) or threads.

flup 1.0.3 is the last release and has Python 3 defects that matter in
production. Rather than patching flup in place, this launcher subclasses its
servers and carries small, tested fixes:

* the prefork parent ignored SIGTERM while idle (``select()`` is retried after
  a signal since PEP 475), so systemd had to SIGKILL it: signals now wake the
  loop through a wakeup socket and shutdown is bounded by SHUTDOWN_GRACE;
* the prefork pool never grew past ``maxSpare`` (child states, bytes, were
  compared with the str ``'\\x00'``) and the SIGUSR1 purge sent a str;
* a forked child left with ``sys.exit()``, unwinding through the parent's
  frames and running the parent's cleanup;
* a request without a body got an ``io.StringIO`` as ``wsgi.input`` (str,
  not bytes);
* a bind failure raised ``TypeError`` (``e[1]`` on an OSError) instead of
  saying what went wrong;
* FastCGI: FCGI_GET_VALUES was answered with nothing (names, bytes, were
  looked up under str keys); tracebacks went to the web server's error log
  only, not to the worker's;
* AJP: a connection over a Unix socket died at once (its peer address was
  formatted as HOST:PORT); every HTTPS request behind mod_ssl died (the
  SSL_KEY_SIZE attribute, decoded to str, was decoded again); the error page
  had status 200; a connection was kept for more requests, so an idle Apache
  connection held a worker for good.

Each connection serves one request (Apache's mod_proxy_scgi and
mod_proxy_fcgi open one per request by default; AJP is told not to reuse it),
so a busy worker is a request in flight and --max-children bounds both.

The app gets the PEP 3333 SCRIPT_NAME and PATH_INFO, whatever the web server
sent (checked against Apache 2.4 for every protocol and mount):

* mod_proxy_scgi and mod_proxy_fcgi send the whole decoded path as
  SCRIPT_NAME and no PATH_INFO; mod_proxy_ajp sends the (still
  percent-encoded) path as its request URI: the path is decoded once and
  split at ``--script-name``;
* mod_scgi (SCGIMount) splits it itself, at an internal prefix that
  mod_rewrite maps the public mount to: its PATH_INFO is kept and
  SCRIPT_NAME becomes ``--script-name``, the public mount (mod_scgi also
  follows a path-only Location itself: ``--absolute-redirects`` makes
  Locations absolute for it);
* a path outside ``--script-name`` reaches the app whole, SCRIPT_NAME empty.

It also refuses a flup version it was not tested with, imports the
application before serving, reports READY/STOPPING and a status line to
systemd and keeps quiet: no line per request, one line at startup, then only
warnings and errors.

With --retry-load (socket activation only), an app that fails to import does
not make the launcher exit, which would leave Apache's requests waiting in the
socket's backlog while systemd restarts it: the launcher reports ready with an
"unavailable:" status, answers every request 503 with Retry-After, and after
1, 2, 4 ... LOAD_RETRY_MAX seconds re-executes itself (same PID, same socket)
to import the app afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.metadata
import io
import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterator

PROG = "pyhost-scgi-launcher"

TESTED_FLUP_VERSIONS = ("1.0.3",)

# protocol -> method -> flup module whose WSGIServer class implements it.
FLUP_SERVERS: dict[str, dict[str, str]] = {
    "scgi": {"prefork": "flup.server.scgi_fork", "threaded": "flup.server.scgi"},
    "fcgi": {"prefork": "flup.server.fcgi_fork", "threaded": "flup.server.fcgi"},
    "ajp": {"prefork": "flup.server.ajp_fork", "threaded": "flup.server.ajp"},
}

# systemd's default TimeoutStopSec is 90 s; a worker that needs more than this
# to finish a request at shutdown is cut off so that restarts stay quick.
SHUTDOWN_GRACE = 1.0

# Idle prefork processes kept ready; the pool grows to --max-children on demand.
PREFORK_MIN_SPARE = 1
PREFORK_MAX_SPARE = 2

SD_LISTEN_FDS_START = 3

# --retry-load: the first retry after this many seconds, doubling up to the most.
LOAD_RETRY_FIRST = 1
LOAD_RETRY_MAX = 60
# Which import attempt this is, carried across re-executions.
LOAD_ATTEMPT_ENV = "PYHOST_SCGI_LOAD_ATTEMPT"
# Threads answering 503 while the app is unavailable: the answer is instant.
UNAVAILABLE_THREADS = 2

AJP_END_RESPONSE = b"\x05"
# Seconds a connection has to deliver its whole request (headers and body).
DEFAULT_READ_TIMEOUT = 60
# How long a finished connection waits for the web server to close its end.
CLOSE_DRAIN = 1.0

log = logging.getLogger(PROG)


class LauncherError(Exception):
    """A problem the operator must fix; reported as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class AppLoadError(LauncherError):
    """The app's code failed: --retry-load retries these."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause  # the exception's type only: its text may hold secrets


# --------------------------------------------------------------------------
# Command line


@dataclass(frozen=True)
class BindAddress:
    kind: str  # "unix", "tcp" or "systemd"
    text: str  # as given, for messages
    path: str = ""
    host: str = ""
    port: int = 0


def parse_bind(value: str) -> BindAddress:
    if value == "systemd":
        return BindAddress("systemd", value)
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise argparse.ArgumentTypeError("unix: needs a socket path")
        return BindAddress("unix", value, path=path)
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"write IPv6 addresses as [ADDRESS]:PORT, not {value!r}"
        )
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise argparse.ArgumentTypeError(
            f"expected unix:/PATH, HOST:PORT, [IPV6]:PORT or systemd, not {value!r}"
        )
    return BindAddress("tcp", value, host=host, port=int(port_text))


def parse_max_children(value: str) -> int:
    if value == "auto":
        return (os.cpu_count() or 1) + 2
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'auto', not {value!r}"
        )
    return int(value)


def parse_non_negative(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {value!r}")
    return int(value)


def parse_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(
            f"expected an octal mode such as 0660, not {value!r}"
        )
    return mode


def parse_script_name(value: str) -> str:
    mount = value.rstrip("/")
    if mount and not mount.startswith("/"):
        raise argparse.ArgumentTypeError(
            f"expected '' or a path starting with '/', not {value!r}"
        )
    return mount


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a WSGI application over SCGI, FastCGI or AJP with flup.\n"
        "The successor of Django's removed 'manage.py runfcgi'.",
        epilog="""examples:
  %(prog)s --app blog.wsgi:application --chdir /srv/scgi/blog/code \\
      --bind systemd --script-name /blog
  %(prog)s --app hello:app --method threaded --bind unix:/run/hello/hello.sock
  %(prog)s --app hello:app --protocol fcgi --bind 127.0.0.1:4000

Apache: ProxyPass /blog/ "unix:/run/scgi-blog/blog.sock|scgi://blog/blog/"
(or fcgi://, ajp://) with --script-name /blog. Keep the mount in the backend
URL for AJP: its path is all the launcher gets. mod_scgi: SCGIMount at an
internal prefix is fine, the app sees --script-name.

signals: SIGTERM, SIGINT or SIGHUP stop the server (requests in flight get
%(grace).1f s to finish); SIGUSR1 replaces every prefork worker process.
exit status: 0 after a signal, 1 on a runtime error, 2 on a usage error.
""" % {"prog": PROG, "grace": SHUTDOWN_GRACE},
    )
    parser.add_argument(
        "--app",
        required=True,
        metavar="MODULE:CALLABLE",
        help="the WSGI application, e.g. blog.wsgi:application",
    )
    parser.add_argument(
        "--chdir",
        metavar="DIR",
        help="change to DIR and put it first on sys.path before importing the app",
    )
    parser.add_argument(
        "--protocol",
        choices=list(FLUP_SERVERS),
        default="scgi",
        help="protocol spoken with the web server (default: %(default)s)",
    )
    parser.add_argument(
        "--method",
        choices=("prefork", "threaded"),
        default="prefork",
        help="worker processes or worker threads (default: %(default)s)",
    )
    parser.add_argument(
        "--max-children",
        type=parse_max_children,
        default="auto",
        metavar="N|auto",
        help="most requests served at once: processes (prefork) or threads "
        "(threaded); auto = CPU count + 2 (default: auto)",
    )
    parser.add_argument(
        "--max-requests",
        type=parse_non_negative,
        default=0,
        metavar="N",
        help="prefork: replace a worker process after N requests; "
        "0 = never (default: 0)",
    )
    parser.add_argument(
        "--bind",
        type=parse_bind,
        required=True,
        metavar="unix:/PATH|HOST:PORT|[IPV6]:PORT|systemd",
        help="where to listen; systemd = the socket passed by socket activation",
    )
    parser.add_argument(
        "--socket-mode",
        type=parse_mode,
        metavar="MODE",
        help="permissions of a unix: socket (default: 0660)",
    )
    parser.add_argument(
        "--script-name",
        type=parse_script_name,
        default="",
        metavar="PATH",
        help="public URL prefix of the app, e.g. /blog; '' for / (default: '')",
    )
    parser.add_argument(
        "--absolute-redirects",
        action="store_true",
        help="make a Location that is only a path (/x) absolute (http://host/x); "
        "needed behind Apache's mod_scgi, which follows such redirects itself",
    )
    parser.add_argument(
        "--retry-load",
        action="store_true",
        help="if the app fails to import, answer 503 and import it again after "
        f"{LOAD_RETRY_FIRST}, {2 * LOAD_RETRY_FIRST}, {4 * LOAD_RETRY_FIRST} ... "
        f"{LOAD_RETRY_MAX} s instead of exiting (--bind systemd only)",
    )
    parser.add_argument(
        "--read-timeout",
        type=parse_non_negative,
        default=DEFAULT_READ_TIMEOUT,
        metavar="SECONDS",
        help="a connection must deliver its request (headers and body) within "
        "SECONDS of being accepted, or it is closed and its worker freed: a slow "
        "or stalled client cannot hold a worker; the app's own time to answer "
        "is not limited; 0 = no limit (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="least severe message logged (default: %(default)s)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.socket_mode is None:
        args.socket_mode = 0o660
    elif args.bind.kind != "unix":
        parser.error("--socket-mode applies to --bind unix:/PATH only")
    if args.retry_load and args.bind.kind != "systemd":
        # Only a socket systemd holds outlives the re-execution cleanly.
        parser.error("--retry-load needs --bind systemd")
    return args


# --------------------------------------------------------------------------
# Start-up checks


def check_flup_version() -> str:
    try:
        version = importlib.metadata.version("flup")
    except importlib.metadata.PackageNotFoundError:
        raise LauncherError(
            "flup is not installed in this Python environment", 2
        ) from None
    if version not in TESTED_FLUP_VERSIONS:
        raise LauncherError(
            f"flup {version} is installed, but this launcher carries fixes tested only with "
            f"flup {', '.join(TESTED_FLUP_VERSIONS)}; install one of those",
            2,
        )
    return version


def load_app(spec: str, chdir: str | None) -> Callable[..., Any]:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise LauncherError(f"--app must be MODULE:CALLABLE, not {spec!r}", 2)
    if chdir:
        os.chdir(chdir)
        sys.path.insert(0, chdir)
    try:
        target: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            target = getattr(target, name)
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        raise AppLoadError(
            f"cannot import --app {spec}: {type(exc).__name__}: {exc}",
            type(exc).__name__,
        ) from None
    if not callable(target):
        raise AppLoadError(
            f"--app {spec} is a {type(target).__name__}, not a WSGI callable",
            "not callable",
        )
    return target


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


# --------------------------------------------------------------------------
# Listening socket


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


# --------------------------------------------------------------------------
# systemd notification


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


# --------------------------------------------------------------------------
# Servers: flup's WSGIServer classes plus the fixes


def split_mount(path: str, mount: str) -> tuple[str, str]:
    """Split a full request path into (SCRIPT_NAME, PATH_INFO) at the mount."""
    if path == mount or path.startswith(mount + "/"):
        return mount, path[len(mount) :]
    # Only reachable when the web server forwards more than the mount. The app
    # gets the real path under an empty SCRIPT_NAME and can answer 404 itself,
    # instead of a path with someone else's prefix cut off.
    return "", path


def pep3333_paths(
    environ: dict[str, Any], full_path: str, mount: str
) -> tuple[str, str]:
    """(SCRIPT_NAME, PATH_INFO) for the app; full_path is the decoded request path."""
    if environ.get("PATH_INFO"):
        # mod_scgi (SCGIMount) has split the path itself, at an internal prefix
        # (/.pyhost-scgi/blog) that mod_rewrite maps the public mount to. Its
        # PATH_INFO is right; the app must build its URLs on the public mount.
        return mount, environ["PATH_INFO"]
    return split_mount(full_path, mount)


class _LauncherServer:
    """Shared by all protocols and methods: construction, environ fix-up,
    serving lifecycle."""

    _wakeup_r: socket.socket
    _wakeup_w: socket.socket

    _jobClass: type

    def __init__(
        self,
        application: Callable[..., Any],
        *,
        mount: str,
        log_level: str,
        max_children: int,
        max_requests: int,
        read_timeout: float = 0,
    ) -> None:
        self._max_children = max_children
        # debug stays off: flup's debug page imports cgitb, removed in Python 3.13.
        super().__init__(
            application,
            debug=False,  # type: ignore[call-arg]
            **self.pool_options(max_children, max_requests),
        )
        # flup logs every request at INFO through a handler of its own; use
        # ours (no duplicate lines) at the operator's level.
        self.logger.handlers.clear()  # type: ignore[attr-defined]
        self.logger.setLevel(log_level)  # type: ignore[attr-defined]
        # flup decodes headers as latin-1, the PEP 3333 "bytes as str" form;
        # the mount is compared in that form too.
        self._mount = mount.encode("utf-8").decode("latin-1")
        self._stop_requested = False
        self.timed_out = False
        self._jobClass = type(
            "Connection", (_ReadDeadline, self._jobClass), {"read_timeout": read_timeout}
        )

    def _sanitizeEnv(self, environ: dict[str, Any]) -> None:
        # flup's SCGI gives a request without a body an io.StringIO: reading it
        # returns str where PEP 3333 requires bytes.
        if isinstance(environ["wsgi.input"], io.StringIO):
            environ["wsgi.input"] = io.BytesIO()
        # FastCGI's would be the web server's error log, shared by every app.
        environ["wsgi.errors"] = sys.stderr
        if not environ.get("QUERY_STRING"):
            environ["QUERY_STRING"] = environ.get("REQUEST_URI", "").partition("?")[2]
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = pep3333_paths(
            environ, self._request_path(environ), self._mount
        )

    def _request_path(self, environ: dict[str, Any]) -> str:
        """The whole decoded request path: mod_proxy_scgi and mod_proxy_fcgi
        send it as SCRIPT_NAME (AJP overrides this)."""
        return environ.get("SCRIPT_NAME", "")

    def serve(
        self,
        sock: socket.socket,
        notifier: SystemdNotifier,
        status: str,
        seconds: float | None = None,
    ) -> None:
        """Serve until a stop signal, or for `seconds` (then `timed_out` is set
        and systemd is not told the service is stopping)."""
        # The socket must not block: several processes may wake up for one connection.
        sock.setblocking(False)
        self._installSignalHandlers()
        try:
            if seconds is not None:
                signal.signal(signal.SIGALRM, self._time_is_up)
                signal.setitimer(signal.ITIMER_REAL, seconds)
            notifier.notify(f"READY=1\nSTATUS={status}")
            self._accept_loop(sock)
            if not self.timed_out:
                notifier.notify("STOPPING=1")
            self._drain()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._restoreSignalHandlers()

    # Named like flup's methods on purpose: flup's prefork child calls
    # _restoreSignalHandlers() right after fork().
    def _installSignalHandlers(self) -> None:
        # Handlers only set flags; the wakeup socket makes select() return at
        # once instead of being silently restarted (PEP 475).
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno())
        handlers = self._signal_handlers()
        self._oldSIGs = [(signum, signal.getsignal(signum)) for signum in handlers]
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _restoreSignalHandlers(self) -> None:
        for signum, handler in self._oldSIGs:
            signal.signal(signum, handler)
        signal.set_wakeup_fd(-1)
        self._wakeup_r.close()
        self._wakeup_w.close()

    def _signal_handlers(self) -> dict[int, Callable[[int, Any], None]]:
        return {
            signal.SIGTERM: self._request_stop,
            signal.SIGINT: self._request_stop,
            signal.SIGHUP: self._request_stop,
        }

    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def _time_is_up(self, signum: int, frame: Any) -> None:
        self.timed_out = not self._stop_requested
        self._stop_requested = True

    def _wait(
        self, sockets: list[socket.socket], timeout: float | None = None
    ) -> list[socket.socket]:
        """select() on sockets plus the wakeup socket; returns the readable sockets."""
        readable, _, _ = select.select([self._wakeup_r, *sockets], [], [], timeout)
        if self._wakeup_r in readable:
            with contextlib.suppress(BlockingIOError):
                while self._wakeup_r.recv(512):
                    pass
        return [sock for sock in readable if sock is not self._wakeup_r]

    @staticmethod
    def pool_options(max_children: int, max_requests: int) -> dict[str, int]:
        raise NotImplementedError

    def _accept_loop(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError


class _PreforkMethod(_LauncherServer):
    """flup's PreforkServer main loop, rewritten where it was broken.

    The parent only manages children; they accept connections themselves.
    """

    _children: dict[int, dict[str, Any]]
    _minSpare: int
    _maxSpare: int
    _maxChildren: int
    _recycle_requested = False

    @staticmethod
    def pool_options(max_children: int, max_requests: int) -> dict[str, int]:
        return {
            "minSpare": PREFORK_MIN_SPARE,
            "maxSpare": min(PREFORK_MAX_SPARE, max_children),
            "maxChildren": max_children,
            "maxRequests": max_requests,
        }

    def _signal_handlers(self) -> dict[int, Callable[[int, Any], None]]:
        return {
            **super()._signal_handlers(),
            signal.SIGCHLD: self._on_child_exit,
            signal.SIGUSR1: self._request_recycle,
        }

    def _on_child_exit(self, signum: int, frame: Any) -> None:
        """Nothing to do here: the wakeup socket gets the main loop to reap."""

    def _request_recycle(self, signum: int, frame: Any) -> None:
        self._recycle_requested = True

    def _accept_loop(self, sock: socket.socket) -> None:
        self._to_recycle: set[int] = set()
        while not self._stop_requested:
            while len(self._children) < self._maxSpare:
                if not self._spawnChild(sock):  # type: ignore[attr-defined]
                    break
            for channel in self._wait(self._channels()):
                self._read_state(channel)
            self._reapChildren()  # type: ignore[attr-defined]
            self._balance(sock)

    def _channels(self) -> list[socket.socket]:
        return [
            child["file"]
            for child in self._children.values()
            if child["file"] is not None
        ]

    def _read_state(self, channel: socket.socket) -> None:
        pid = next(
            pid for pid, child in self._children.items() if child["file"] is channel
        )
        try:
            states = channel.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            states = b""
        if states:
            # A child sends b"\x00" when it takes a request and b"\xff" when it is
            # free again; flup compared these bytes with a str, so every child
            # looked free and the pool never grew. Only the latest state counts.
            self._children[pid]["avail"] = states[-1:] != b"\x00"
        else:
            self._retire(pid)  # the child has exited

    def _retire(self, pid: int) -> None:
        """Close the channel to a child: an idle child exits at once, a busy
        one after its current request (its next status write fails)."""
        child = self._children[pid]
        if child["file"] is not None:
            child["file"].close()
            child["file"] = None
        child["avail"] = False

    def _balance(self, sock: socket.socket) -> None:
        if self._recycle_requested:
            self._recycle_requested = False
            self._to_recycle = set(self._children)
        self._to_recycle &= self._children.keys()
        idle = sorted(pid for pid, child in self._children.items() if child["avail"])
        leaving = {pid for pid in idle if pid in self._to_recycle} | set(
            idle[self._maxSpare :]
        )
        for pid in leaving:
            self._retire(pid)
        available = len(idle) - len(leaving)
        while available < self._minSpare and len(self._children) < self._maxChildren:
            if not self._spawnChild(sock):  # type: ignore[attr-defined]
                break
            available += 1

    def _drain(self) -> None:
        for pid in list(self._children):
            self._retire(pid)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while self._children and (remaining := deadline - time.monotonic()) > 0:
            self._wait([], remaining)
            self._reapChildren()  # type: ignore[attr-defined]
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._children.clear()

    def _child(self, sock: socket.socket, parent: socket.socket) -> None:
        # flup ends a child with sys.exit(): its SystemExit would unwind through
        # the parent's frames copied by fork() and run the parent's cleanup
        # (unlink the socket, tell systemd STOPPING). os._exit() cannot.
        status = 0
        try:
            super()._child(sock, parent)  # type: ignore[misc]
        except KeyboardInterrupt:
            pass
        except BaseException:
            self.logger.exception("worker process %d failed", os.getpid())  # type: ignore[attr-defined]
            status = 1
        sys.stderr.flush()
        os._exit(status)


class RequestTooSlow(EOFError):
    """The connection did not deliver its request in time. An EOFError, so
    that flup closes the connection as it does when a peer goes away."""


class _DeadlineSocket:
    """An accepted connection whose reads must all be done by a deadline.

    Only reads are bounded: once the request has arrived, the app may take
    as long as it needs to answer. flup reads with recv() and through
    makefile(); both come here. Everything else goes to the socket itself."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds if seconds else float("inf")
        self._io_refs = 0
        self._warned = False

    def _too_slow(self) -> RequestTooSlow:
        if not self._warned:
            self._warned = True
            log.warning("closed a connection whose request did not arrive within %g s", self._seconds)
        return RequestTooSlow(f"the request did not arrive within {self._seconds:g} s")

    def _left(self) -> float | None:
        """Seconds left to read (None: no limit); raise when none are."""
        if self._deadline == float("inf"):
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._too_slow()
        return left

    def _before_read(self) -> None:
        self._sock.settimeout(self._left())

    def wait_readable(self) -> None:
        """Wait until there is something to read, at most until the deadline."""
        try:
            readable, _, _ = select.select([self._sock], [], [], self._left())
        except ValueError:  # a closed socket
            raise EOFError from None
        if not readable:
            raise self._too_slow()

    def close_gently(self) -> None:
        """Stop sending and let the peer read all of it before closing, but
        wait at most CLOSE_DRAIN for the peer to close its end."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
            self._sock.settimeout(CLOSE_DRAIN)
            while self._sock.recv(65536):
                pass
        self._sock.close()

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._before_read()
        try:
            return self._sock.recv(size, flags)
        except TimeoutError:
            raise self._too_slow() from None

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        self._before_read()
        try:
            return self._sock.recv_into(buffer, size, flags)
        except TimeoutError:
            raise self._too_slow() from None

    def send(self, data: Any, flags: int = 0) -> int:
        self._sock.settimeout(None)
        return self._sock.send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._sock.settimeout(None)
        self._sock.sendall(data, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None) -> Any:
        # As socket.makefile() does, over this object's recv_into and send.
        raw = socket.SocketIO(self, mode.replace("b", ""))  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering == 0:
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        return io.BufferedReader(raw, size) if "r" in mode else io.BufferedWriter(raw, size)

    def _decref_socketios(self) -> None:
        self._io_refs -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _ReadDeadline:
    """A flup connection that gives its peer --read-timeout seconds to send the request."""

    read_timeout: float

    def __init__(self, sock: socket.socket, addr: Any, *args: Any) -> None:
        super().__init__(_DeadlineSocket(sock, self.read_timeout), addr, *args)  # type: ignore[call-arg]

    def run(self) -> None:
        # flup ends a connection quietly on EOFError where it reads; this is
        # for where it does not catch it.
        with contextlib.suppress(RequestTooSlow):
            super().run()  # type: ignore[misc]


class _TrackedJob:
    """A flup connection job that reports when it is done."""

    def __init__(self, job: Any, done: Callable[[], None]) -> None:
        self._job = job
        self._done = done

    def run(self) -> None:
        try:
            self._job.run()
        finally:
            self._done()


class _ThreadedMethod(_LauncherServer):
    """flup's ThreadedServer main loop with a fixed pool of --max-children threads.

    flup's pool counts a thread idle until it has picked up its job, so a burst
    of connections could queue behind busy threads. Here the pool has all its
    threads from the start and the loop accepts only while one is free; the
    others wait in the kernel's backlog, as with prefork.
    """

    _threadPool: Any
    _jobClass: Any
    _jobArgs: tuple[Any, ...]

    @staticmethod
    def pool_options(max_children: int, max_requests: int) -> dict[str, int]:
        return {
            "minSpare": max_children,
            "maxSpare": max_children,
            "maxThreads": max_children,
        }

    def _accept_loop(self, sock: socket.socket) -> None:
        self._busy = 0
        self._idle = threading.Condition()
        while not self._stop_requested:
            if self._wait([sock] if self._busy < self._max_children else []):
                self._accept(sock)

    def _accept(self, sock: socket.socket) -> None:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process sharing the socket took it
        if not self._isClientAllowed(addr):  # type: ignore[attr-defined]
            conn.close()
            return
        with self._idle:
            self._busy += 1
        self._threadPool.addJob(
            _TrackedJob(self._jobClass(conn, addr, *self._jobArgs), self._job_done)
        )

    def _job_done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
        with contextlib.suppress(
            OSError
        ):  # full (the loop will wake anyway) or closed at exit
            self._wakeup_w.send(b"\0")

    def _drain(self) -> None:
        # Threads still busy after the grace are daemon threads: they end with the process.
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=SHUTDOWN_GRACE)


# --------------------------------------------------------------------------
# Protocols: fixes for flup's FastCGI and AJP servers


class _FastCGIFixes:
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
        self._jobClass = type("Connection", (_FastCGIConnectionFixes, self._jobClass), {})  # type: ignore[has-type]
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


class _FastCGIConnectionFixes:
    """flup waits for each FastCGI record in select(), a second at a time with
    no end, and after a request for as long as the peer keeps its end open:
    a client that stalls would hold the worker. Both waits end at the
    connection's deadline (--read-timeout) here."""

    _sock: _DeadlineSocket

    def process_input(self) -> None:
        self._sock.wait_readable()
        super().process_input()  # type: ignore[misc]

    def _cleanupSocket(self) -> None:
        self._sock.close_gently()


class _AjpFixes:
    """flup.server.ajp and ajp_fork."""

    _jobClass: type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requestClass = type(
            "Request", (_AjpRequestFixes, self.requestClass), {}  # type: ignore[has-type]
        )
        self._jobClass = type("Connection", (_AjpConnectionFixes, self._jobClass), {})

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


class _AjpRequestFixes:
    def addAttribute(self, name: bytes, value: bytes | str) -> None:
        # flup decodes SSL_KEY_SIZE (a number) to str, then calls .decode() on
        # it: behind mod_ssl, every HTTPS request failed.
        if isinstance(value, str):
            value = value.encode("latin-1")
        super().addAttribute(name, value)  # type: ignore[misc]


class _AjpConnectionFixes:
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
        super()._forwardRequest(pkt)  # type: ignore[misc]
        raise EOFError  # ends flup's run(), which closes the connection


PROTOCOL_FIXES: dict[str, tuple[type, ...]] = {
    "scgi": (),
    "fcgi": (_FastCGIFixes,),
    "ajp": (_AjpFixes,),
}

METHODS: dict[str, type[_LauncherServer]] = {
    "prefork": _PreforkMethod,
    "threaded": _ThreadedMethod,
}


def build_server(
    args: argparse.Namespace, application: Callable[..., Any]
) -> _LauncherServer:
    flup_class = importlib.import_module(
        FLUP_SERVERS[args.protocol][args.method]
    ).WSGIServer
    method = METHODS[args.method]
    server_class = type(
        f"{args.protocol}_{args.method}_server",
        # The protocol's fixes first: they override the method's and flup's.
        (*PROTOCOL_FIXES[args.protocol], method, flup_class),
        {},
    )
    return server_class(
        application,
        mount=args.script_name,
        log_level=args.log_level,
        max_children=args.max_children,
        max_requests=args.max_requests,
        read_timeout=args.read_timeout,
    )


def absolute_redirects(application: Callable[..., Any]) -> Callable[..., Any]:
    """Make every path-only Location header absolute.

    Apache's mod_scgi treats a Location that starts with "/" as CGI's "local
    redirect": it serves the target itself, under the old URL, instead of
    sending the redirect to the browser (a POST-redirect-GET then stays on
    the POST's URL). Django and most frameworks send such path-only
    Locations, which RFC 9110 allows.
    """

    def with_absolute_location(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [
                (name, _absolute_url(environ, value))
                if name.lower() == "location" and value.startswith("/") and not value.startswith("//")
                else (name, value)
                for name, value in headers
            ]
            return start_response(status, headers, exc_info)

        return application(environ, start)

    return with_absolute_location


def _absolute_url(environ: dict[str, Any], path: str) -> str:
    """PEP 3333's URL reconstruction, for the scheme and host part."""
    scheme = environ["wsgi.url_scheme"]
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ["SERVER_NAME"]
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != {"https": "443", "http": "80"}.get(scheme):
            host += ":" + port
    return f"{scheme}://{host}{path}"


# --------------------------------------------------------------------------


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    flup_version = check_flup_version()
    attempt = load_attempt()
    notifier = SystemdNotifier.from_environment()
    # What a re-execution starts from: not what the failed import left behind.
    environment = dict(os.environ)
    with listening(args.bind, args.socket_mode) as sock:
        try:
            application = load_app(args.app, args.chdir)
        except AppLoadError as exc:
            if not args.retry_load:
                raise
            print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
            return serve_unavailable(args, sock, notifier, environment, exc.cause, attempt)
        if args.absolute_redirects:
            application = absolute_redirects(application)
        if args.method == "threaded" and args.max_requests:
            log.warning(
                "--max-requests %d is ignored with --method threaded", args.max_requests
            )
        server = build_server(args, application)
        serving = (
            f"serving {args.app} ({args.protocol}, {args.method}, "
            f"max {args.max_children} {'processes' if args.method == 'prefork' else 'threads'}, "
            f"max-requests {args.max_requests})"
        )
        print(
            f"{PROG}: {serving} on {args.bind.text}, "
            f"mount {args.script_name or '/'!r}, flup {flup_version}",
            file=sys.stderr,
            flush=True,
        )
        server.serve(sock, notifier, serving)
    return 0


def load_attempt() -> int:
    value = os.environ.pop(LOAD_ATTEMPT_ENV, "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def serve_unavailable(
    args: argparse.Namespace,
    sock: socket.socket,
    notifier: SystemdNotifier,
    environment: dict[str, str],
    cause: str,
    attempt: int,
) -> int:
    """Answer 503 for a while, then re-execute to import the app again."""
    delay = min(LOAD_RETRY_FIRST * 2 ** min(attempt - 1, 30), LOAD_RETRY_MAX)
    status = (
        f"unavailable: the app failed to load ({cause}), attempt {attempt}; "
        f"answering 503, next attempt in {delay} s"
    )
    print(f"{PROG}: {status}", file=sys.stderr, flush=True)
    answering = argparse.Namespace(
        **{**vars(args), "method": "threaded", "max_children": UNAVAILABLE_THREADS, "max_requests": 0}
    )
    server = build_server(answering, unavailable_app(delay))
    server.serve(sock, notifier, status, seconds=delay)
    if not server.timed_out:
        return 0  # stopped by a signal
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


def main() -> None:
    try:
        sys.exit(run())
    except LauncherError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
