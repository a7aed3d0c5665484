"""The command line, and run(): how the pieces are put together."""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import importlib.metadata
import logging
import os
import socket
import sys
import traceback
from typing import Any, Callable

from pyhost_scgi_launcher import PROG, AppLoadError, LauncherError, log
from pyhost_scgi_launcher.deadline import DEFAULT_READ_TIMEOUT
from pyhost_scgi_launcher.environ import absolute_redirects
from pyhost_scgi_launcher.pools import DEFAULT_DRAIN_TIMEOUT, LOOPBACK_PEERS, IPAddress
from pyhost_scgi_launcher.sockets import BindAddress, listening
from pyhost_scgi_launcher.systemd import SystemdNotifier
from pyhost_scgi_launcher.unavailable import (
    LOAD_RETRY_FIRST,
    LOAD_RETRY_MAX,
    UNAVAILABLE_THREADS,
    load_attempt,
    reexecute,
    retry_delay,
    unavailable_app,
)

TESTED_FLUP_VERSIONS = ("1.0.3",)

PROTOCOLS = ("scgi", "fcgi", "ajp")
METHODS = ("prefork", "threaded")


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


def parse_peer(value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None


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
  %(prog)s --app blog.wsgi:application --chdir /srv/blog/code \\
      --bind systemd --script-name /blog
  %(prog)s --app hello:app --method threaded --bind unix:/run/hello/hello.sock
  %(prog)s --app hello:app --protocol fcgi --bind 127.0.0.1:4000

Apache: ProxyPass /blog/ "unix:/run/blog/blog.sock|scgi://blog/blog/"
(or fcgi://, ajp://) with --script-name /blog. Keep the mount in the backend
URL for AJP: its path is all the launcher gets. mod_scgi: SCGIMount at an
internal prefix is fine, the app sees --script-name.

signals: SIGTERM, SIGINT or SIGHUP stop the server: it accepts no more
connections and requests in flight get --drain-timeout seconds to finish;
SIGUSR1 replaces every prefork worker process.
exit status: 0 after a signal, 1 on a runtime error, 2 on a usage error.
""" % {"prog": PROG},
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
        choices=PROTOCOLS,
        default="scgi",
        help="protocol spoken with the web server (default: %(default)s)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
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
        "--allow-peer",
        type=parse_peer,
        action="append",
        metavar="ADDRESS",
        help="a TCP peer that may connect (repeat for more); a connection from "
        "any other address is closed unread (default: 127.0.0.1 and ::1)",
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
        "or stalled client cannot hold a worker; nor can one that takes none of "
        "the answer for SECONDS; the app's own time to answer is not limited; "
        "0 = no limit (default: %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=parse_non_negative,
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="SECONDS",
        help="at a stop signal, requests in flight get SECONDS to finish before "
        "they are cut off; connections not yet accepted stay in the socket's "
        "backlog for the next process (--bind systemd) (default: %(default)s)",
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
    if args.allow_peer is None:
        args.allow_peer = list(LOOPBACK_PEERS)
    elif args.bind.kind == "unix":
        parser.error("--allow-peer applies to TCP: a unix: socket's mode decides who may connect")
    if args.retry_load and args.bind.kind != "systemd":
        # Only a socket systemd holds outlives the re-execution cleanly.
        parser.error("--retry-load needs --bind systemd")
    return args


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


def build_server(args: argparse.Namespace, application: Callable[..., Any], **overrides: Any) -> Any:
    """The server args ask for, serving application; overrides replace args."""
    # Imported here, not above: the servers import flup, which must first pass
    # check_flup_version().
    from pyhost_scgi_launcher import servers

    options = {**vars(args), **overrides}
    return servers.build_server(
        options["protocol"],
        options["method"],
        application,
        mount=options["script_name"],
        log_level=options["log_level"],
        max_children=options["max_children"],
        max_requests=options["max_requests"],
        read_timeout=options["read_timeout"],
        drain_timeout=options["drain_timeout"],
        allowed_peers=options["allow_peer"],
    )


def serve_unavailable(
    args: argparse.Namespace,
    sock: socket.socket,
    notifier: SystemdNotifier,
    environment: dict[str, str],
    cause: str,
    attempt: int,
) -> int:
    """Answer 503 for a while, then re-execute to import the app again."""
    delay = retry_delay(attempt)
    status = (
        f"unavailable: the app failed to load ({cause}), attempt {attempt}; "
        f"answering 503, next attempt in {delay} s"
    )
    print(f"{PROG}: {status}", file=sys.stderr, flush=True)
    server = build_server(
        args, unavailable_app(delay), method="threaded", max_children=UNAVAILABLE_THREADS, max_requests=0
    )
    server.serve(sock, notifier, status, seconds=delay)
    if not server.timed_out:
        return 0  # stopped by a signal
    reexecute(sock, notifier, environment, attempt)


def pinned(
    argv: list[str], environ: dict[str, str], prefix: str, executable: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of this launcher on the real paths of its release.

    An app's code and virtualenv are reached through links to its live
    release (HOME/code -> current/code, current -> releases/ID), which a
    deploy swaps to the next release before it restarts the app. A process
    started on the links would import, whenever it first needs a module, the
    release that replaced its own. So the interpreter, this launcher, its
    --chdir and the app's search paths are pinned to what the links point to
    now, for the life of the process: those below the app's home (the
    parent of the virtualenv's link)."""
    home = os.path.dirname(prefix) + "/"

    def real(path: str) -> str:
        return os.path.realpath(path) if path.startswith(home) else path

    real_prefix = os.path.realpath(prefix)
    if real_prefix != prefix and executable.startswith(prefix + "/"):
        executable = real_prefix + executable[len(prefix):]
    pinned_argv = [executable]
    for index, arg in enumerate(argv[1:], 1):
        if arg.startswith("--chdir="):
            arg = "--chdir=" + real(arg[len("--chdir="):])
        elif argv[index - 1] == "--chdir" or index == 1:
            arg = real(arg)
        pinned_argv.append(arg)
    pinned_environ = dict(environ)
    for key in ("PATH", "PYTHONPATH", "VIRTUAL_ENV"):
        if environ.get(key):
            pinned_environ[key] = ":".join(real(entry) for entry in environ[key].split(":"))
    return pinned_argv, pinned_environ


def pin_release() -> None:
    """Start again on the real paths of the release (see pinned), unless already there."""
    if sys.prefix == sys.base_prefix:  # not in a virtualenv: not an app's service
        return
    argv, environ = pinned(sys.orig_argv, dict(os.environ), sys.prefix, sys.executable)
    if argv[0] != sys.executable or argv[1:] != sys.orig_argv[1:] or environ != dict(os.environ):
        os.execve(argv[0], argv, environ)


def main() -> None:
    pin_release()
    try:
        sys.exit(run())
    except LauncherError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
