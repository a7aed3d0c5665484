"""The launcher's pure parts, imported and called directly: its command line,
the PEP 3333 paths, the retry schedule, the read deadline and which classes
make up each server. The behaviour over real sockets and processes is
tested in test_launcher*.py."""

from __future__ import annotations

import argparse
import gc
import io
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

import conftest  # noqa: F401  # pylint: disable=unused-import  # puts the launcher's source on sys.path
from pyhost_scgi_launcher import cli, deadline, environ, pools, protocols, servers, sockets, systemd, unavailable

# Command line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("systemd", sockets.BindAddress("systemd", "systemd")),
        ("unix:/run/a/a.sock", sockets.BindAddress("unix", "unix:/run/a/a.sock", path="/run/a/a.sock")),
        ("127.0.0.1:8001", sockets.BindAddress("tcp", "127.0.0.1:8001", host="127.0.0.1", port=8001)),
        ("[::1]:8001", sockets.BindAddress("tcp", "[::1]:8001", host="::1", port=8001)),
        ("localhost:65535", sockets.BindAddress("tcp", "localhost:65535", host="localhost", port=65535)),
    ],
)
def test_parse_bind_reads_every_form(text: str, expected: sockets.BindAddress) -> None:
    assert cli.parse_bind(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unix:", "unix: needs a socket path"),
        ("::1:8001", "write IPv6 addresses as [ADDRESS]:PORT"),
        ("127.0.0.1", "expected unix:/PATH"),
        ("127.0.0.1:0", "expected unix:/PATH"),
        ("127.0.0.1:65536", "expected unix:/PATH"),
        (":8001", "expected unix:/PATH"),
        ("host:http", "expected unix:/PATH"),
    ],
)
def test_parse_bind_refuses_what_it_cannot_listen_on(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("[", r"\[")):
        cli.parse_bind(text)


def test_max_children_auto_is_cpus_plus_two_and_numbers_are_positive() -> None:
    assert cli.parse_max_children("auto") == (os.cpu_count() or 1) + 2
    assert cli.parse_max_children("7") == 7
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_max_children(bad)


def test_modes_are_octal_and_at_most_0777() -> None:
    assert cli.parse_mode("0660") == 0o660
    assert cli.parse_mode("777") == 0o777
    for bad in ("1777", "0888", "rw", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_mode(bad)


def test_script_name_loses_its_trailing_slash_and_must_be_absolute() -> None:
    assert cli.parse_script_name("/blog/") == "/blog"
    assert cli.parse_script_name("/") == ""
    assert cli.parse_script_name("") == ""
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_script_name("blog")


def test_options_that_depend_on_the_bind_are_checked_together(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.parse_args(["--app", "a:b", "--bind", "unix:/tmp/a.sock"])
    assert (args.socket_mode, args.protocol, args.method, args.read_timeout) == (0o660, "scgi", "prefork", 60)
    for argv, message in [
        (["--bind", "127.0.0.1:1", "--socket-mode", "0600"], "--socket-mode applies to --bind unix:/PATH only"),
        (["--bind", "unix:/tmp/a.sock", "--retry-load"], "--retry-load needs --bind systemd"),
        (["--bind", "unix:/tmp/a.sock", "--allow-peer", "10.0.0.1"], "--allow-peer applies to TCP"),
        (["--bind", "127.0.0.1:1", "--allow-peer", "frontend.example"], "'frontend.example' is not an IP address"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            cli.parse_args(["--app", "a:b", *argv])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def test_allowed_peers_are_the_loopback_unless_given() -> None:
    assert cli.parse_args(["--app", "a:b", "--bind", "127.0.0.1:1"]).allow_peer == list(pools.LOOPBACK_PEERS)
    args = cli.parse_args(["--app", "a:b", "--bind", "systemd", "--allow-peer", "10.0.0.7", "--allow-peer", "fd00::7"])
    assert [str(peer) for peer in args.allow_peer] == ["10.0.0.7", "fd00::7"]


@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")  # flup's thread pool, started by the threaded ones
@pytest.mark.parametrize(("protocol", "method"), sorted(servers.SERVERS))
def test_every_server_admits_the_same_peers(protocol: str, method: str) -> None:
    """flup's own rules differed by protocol and method; the pools' rule is the only one."""
    server = servers.build_server(protocol, method, lambda environ, start_response: [], mount="", log_level="ERROR",
                                  max_children=1, max_requests=0, allowed_peers=cli.parse_args(
                                      ["--app", "a:b", "--bind", "systemd", "--allow-peer", "10.0.0.7"]).allow_peer)
    assert server._isClientAllowed(("10.0.0.7", 4000))
    assert server._isClientAllowed(("::ffff:10.0.0.7", 4000, 0, 0))  # an IPv4 peer on an IPv6 socket
    assert not server._isClientAllowed(("127.0.0.1", 4000))
    assert not server._isClientAllowed(("10.0.0.8", 4000))
    assert server._isClientAllowed("")  # a Unix socket's peer: the file's mode decides


def test_every_protocol_and_method_the_command_line_offers_has_a_server() -> None:
    assert set(servers.SERVERS) == {(p, m) for p in cli.PROTOCOLS for m in cli.METHODS}


# Which classes make up a server


@pytest.mark.parametrize(("protocol", "method"), sorted(servers.SERVERS))
def test_each_server_is_protocol_fixes_then_pool_then_flup(protocol: str, method: str) -> None:
    server = servers.SERVERS[protocol, method]
    mro = server.__mro__
    pool = {"prefork": pools.PreforkPool, "threaded": pools.ThreadedPool}[method]
    flup_module = {"scgi": "scgi", "fcgi": "fcgi", "ajp": "ajp"}[protocol] + ("_fork" if method == "prefork" else "")
    flup_server = next(cls for cls in mro if cls.__module__ == f"flup.server.{flup_module}")
    fixes = {"scgi": [], "fcgi": [protocols.FastCGIFixes], "ajp": [protocols.AjpFixes]}[protocol]
    order = [*fixes, pool, flup_server]
    assert [mro.index(cls) for cls in order] == sorted(mro.index(cls) for cls in order)
    connection = server.connection_class.__mro__
    assert connection.index(deadline.ReadDeadline) < connection.index(
        next(cls for cls in connection if cls.__module__ == f"flup.server.{protocol}_base")
    )
    connection_fixes = {"scgi": None, "fcgi": protocols.FastCGIConnectionFixes, "ajp": protocols.AjpConnectionFixes}
    if connection_fixes[protocol]:
        assert connection.index(connection_fixes[protocol]) < connection.index(deadline.ReadDeadline)
    if protocol == "ajp":
        assert issubclass(server.requestClass, protocols.AjpRequestFixes)


def test_pools_size_themselves_from_max_children() -> None:
    assert pools.PreforkPool.pool_options(1, 0) == {"minSpare": 1, "maxSpare": 1, "maxChildren": 1, "maxRequests": 0}
    assert pools.PreforkPool.pool_options(8, 500) == {"minSpare": 1, "maxSpare": 2, "maxChildren": 8, "maxRequests": 500}
    assert pools.ThreadedPool.pool_options(8, 500) == {"minSpare": 8, "maxSpare": 8, "maxThreads": 8}


# PEP 3333 environ


@pytest.mark.parametrize(
    ("path", "mount", "expected"),
    [
        ("/blog/a/b", "/blog", ("/blog", "/a/b")),
        ("/blog", "/blog", ("/blog", "")),
        ("/blog/", "/blog", ("/blog", "/")),
        ("/blogger/x", "/blog", ("", "/blogger/x")),
        ("/x", "", ("", "/x")),
    ],
)
def test_split_mount(path: str, mount: str, expected: tuple[str, str]) -> None:
    assert environ.split_mount(path, mount) == expected


def test_mod_scgi_path_info_is_kept_under_the_public_mount() -> None:
    sent = {"SCRIPT_NAME": "/.pyhost-scgi/blog", "PATH_INFO": "/a/"}
    assert environ.pep3333_paths(sent, "/.pyhost-scgi/blog", "/blog") == ("/blog", "/a/")


def test_fix_environ_gives_bytes_input_the_workers_stderr_and_the_query() -> None:
    sent = {
        "wsgi.input": io.StringIO(),
        "wsgi.errors": io.StringIO(),
        "REQUEST_URI": "/blog/a?x=1&y=%C3%A9",
        "SCRIPT_NAME": "/blog/a",
    }
    environ.fix_environ(sent, "/blog/a", "/blog")
    assert sent["wsgi.input"].read() == b""
    assert sent["wsgi.errors"] is sys.stderr
    assert sent["QUERY_STRING"] == "x=1&y=%C3%A9"
    assert (sent["SCRIPT_NAME"], sent["PATH_INFO"]) == ("/blog", "/a")


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"wsgi.url_scheme": "http", "HTTP_HOST": "a.test:8080"}, "http://a.test:8080/x"),
        ({"wsgi.url_scheme": "https", "SERVER_NAME": "a.test", "SERVER_PORT": "443"}, "https://a.test/x"),
        ({"wsgi.url_scheme": "http", "SERVER_NAME": "a.test", "SERVER_PORT": "8000"}, "http://a.test:8000/x"),
    ],
)
def test_absolute_url(sent: dict[str, str], expected: str) -> None:
    assert environ.absolute_url(sent, "/x") == expected


def test_absolute_redirects_rewrites_only_path_only_locations() -> None:
    def app(environ_: dict, start_response: Callable[..., object]) -> list[bytes]:
        start_response("302 Found", [("Location", environ_["PATH_INFO"]), ("X-Other", "/kept")])
        return [b""]

    for location, expected in [("/next/", "http://a.test/next/"), ("//cdn.test/x", "//cdn.test/x")]:
        seen: list = []
        environ.absolute_redirects(app)(
            {"wsgi.url_scheme": "http", "HTTP_HOST": "a.test", "PATH_INFO": location},
            lambda status, headers, exc_info=None: seen.extend(headers),
        )
        assert seen == [("Location", expected), ("X-Other", "/kept")]


# --retry-load


def test_retries_wait_one_two_four_seconds_up_to_a_minute() -> None:
    assert [unavailable.retry_delay(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 1000)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@pytest.mark.parametrize(("value", "expected"), [(None, 1), ("3", 3), ("0", 1), ("x", 1), ("-2", 1)])
def test_the_attempt_number_comes_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int
) -> None:
    if value is not None:
        monkeypatch.setenv(unavailable.LOAD_ATTEMPT_ENV, value)
    assert unavailable.load_attempt() == expected
    assert unavailable.LOAD_ATTEMPT_ENV not in os.environ


def test_the_unavailable_app_answers_503_with_retry_after() -> None:
    seen: list = []
    body = b"".join(unavailable.unavailable_app(8)({}, lambda status, headers: seen.extend([status, headers])))
    status, headers = seen
    assert status == "503 Service Unavailable"
    assert ("Retry-After", "8") in headers and ("Content-Length", str(len(body))) in headers


# systemd and sockets


def test_notifications_reach_the_socket_and_the_environment_loses_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        notifier = systemd.SystemdNotifier.from_environment()
        assert "NOTIFY_SOCKET" not in os.environ
        notifier.notify("READY=1")
        assert listener.recv(64) == b"READY=1"
    assert systemd.SystemdNotifier("@abstract")._address == "\0abstract"
    systemd.SystemdNotifier(None).notify("READY=1")  # outside systemd: nothing to do


def test_a_stale_unix_socket_is_replaced_a_live_one_or_a_file_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    sockets.remove_stale_unix_socket(path)
    assert not os.path.exists(path)
    with sockets.listen_unix(path, 0o600) as live:
        assert os.stat(path).st_mode & 0o777 == 0o600
        with pytest.raises(OSError, match="in use"):
            sockets.remove_stale_unix_socket(path)
        assert live.fileno() >= 0
    os.unlink(path)
    (tmp_path / "app.sock").write_text("not a socket")
    with pytest.raises(OSError, match="exists and is not a socket"):
        sockets.remove_stale_unix_socket(path)


# The read deadline


def test_reads_end_at_the_deadline_but_writes_do_not() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        connection = deadline.DeadlineSocket(ours, 0.3)
        peer.sendall(b"head")
        assert connection.recv(4) == b"head"
        started = time.monotonic()
        with pytest.raises(deadline.RequestTooSlow):
            connection.recv(4)
        assert 0.1 < time.monotonic() - started < 2
        connection.sendall(b"answer")  # the app's answer is not bounded
        assert peer.recv(6) == b"answer"
        with pytest.raises(deadline.RequestTooSlow):
            connection.wait_readable()


def test_no_read_timeout_means_no_deadline() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        connection = deadline.DeadlineSocket(ours, 0)
        peer.sendall(b"x")
        connection.wait_readable()
        assert connection.makefile("rb").read(1) == b"x"


def test_a_launcher_on_an_apps_links_is_pinned_to_the_release_they_point_to(tmp_path: Path) -> None:
    """home/venv -> current/venv, current -> releases/ID: the next deploy swaps current, and a running
    process must not import the next release's modules."""
    home = tmp_path / "blog"
    (home / "releases/r1/code").mkdir(parents=True)
    (home / "venvs/v1/bin").mkdir(parents=True)
    (home / "venvs/v1/bin/pyhost-scgi-launcher").write_text("")
    (home / "releases/r1/venv").symlink_to("../../venvs/v1")
    (home / "current").symlink_to("releases/r1")
    (home / "code").symlink_to("current/code")
    (home / "venv").symlink_to("current/venv")
    argv = [f"{home}/venv/bin/python", f"{home}/venv/bin/pyhost-scgi-launcher", "--app", "blog.wsgi:app",
            "--chdir", f"{home}/code", "--script-name", "/blog"]
    environ = {"PATH": f"{home}/venv/bin:/usr/bin", "PYTHONPATH": f"{home}/code:/etc/scgi/blog",
               "VIRTUAL_ENV": f"{home}/venv", "LISTEN_FDS": "1"}
    real = os.path.realpath(home)
    pinned_argv, pinned_environ = cli.pinned(argv, environ, f"{home}/venv", f"{home}/venv/bin/python")
    assert pinned_argv == [f"{real}/venvs/v1/bin/python", f"{real}/venvs/v1/bin/pyhost-scgi-launcher", "--app",
                           "blog.wsgi:app", "--chdir", f"{real}/releases/r1/code", "--script-name", "/blog"]
    assert pinned_environ == {"PATH": f"{real}/venvs/v1/bin:/usr/bin",
                              "PYTHONPATH": f"{real}/releases/r1/code:/etc/scgi/blog",
                              "VIRTUAL_ENV": f"{real}/venvs/v1", "LISTEN_FDS": "1"}
    # Started again on those, it is where it should be: no second start.
    assert cli.pinned(pinned_argv, pinned_environ, f"{real}/venvs/v1",
                      f"{real}/venvs/v1/bin/python") == (pinned_argv, pinned_environ)


def test_a_prefork_parent_freezes_what_it_imported_before_forking() -> None:
    """Frozen objects are never scanned by a child's cycle collector: their pages stay shared."""
    try:
        pools.PreforkPool.share_with_children()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_an_scgi_request_is_read_in_one_recv_and_its_body_follows_through_makefile() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        peer.sendall(b"24:CONTENT_LENGTH\x005\x00SCGI\x001\x00,hello")
        recvs = []
        real = DeadlineRecorder(ours, recvs)
        connection = deadline.DeadlineSocket(real, 5, read_ahead=16384)  # type: ignore[arg-type]
        size = b""
        while (char := connection.recv(1)) != b":":
            size += char
        assert connection.recv(int(size)) == b"CONTENT_LENGTH\x005\x00SCGI\x001\x00"
        assert connection.recv(1) == b","
        connection.setblocking(True)
        assert connection.makefile("rb").read(5) == b"hello"
        assert recvs == [16384]


class DeadlineRecorder:
    """A socket that records the sizes its recv() is asked for."""

    def __init__(self, sock: socket.socket, sizes: list[int]) -> None:
        self._sock, self._sizes = sock, sizes

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._sizes.append(size)
        return self._sock.recv(size, flags)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)
