"""The launcher, run as a real subprocess and spoken to over real sockets, in
each protocol as Apache speaks it.

Where it is cheap, a test first shows the flup 1.0.3 defect with plain flup,
then the launcher's fix. FastCGI and AJP specifics: test_launcher_protocols.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

import conftest
from conftest import (
    LAUNCHER,
    PROTOCOLS,
    TIMEOUT,
    Launcher,
    Response,
    child_pids,
    is_running,
    make_workdir,
    scgi_request,
    wait_until,
)

METHODS = ["prefork", "threaded"]
SERVERS = [(protocol, method) for protocol in PROTOCOLS for method in METHODS]
SERVER_IDS = [f"{protocol}-{method}" for protocol, method in SERVERS]


# --------------------------------------------------------------------------
# SCRIPT_NAME / PATH_INFO / query / body


@pytest.fixture(scope="module", params=SERVERS, ids=SERVER_IDS)
def blog(request: pytest.FixtureRequest) -> Iterator[Launcher]:
    """One echo server per protocol and method, mounted at /blog."""
    protocol, method = request.param
    workdir = make_workdir()
    launcher = Launcher(
        workdir,
        "echo",
        "--method",
        method,
        "--script-name",
        "/blog",
        protocol=protocol,
    ).wait_ready()
    yield launcher
    launcher.close()
    shutil.rmtree(workdir, ignore_errors=True)


def real_path(environ_value: str) -> str:
    """What Django does with PATH_INFO: PEP 3333 bytes-as-latin-1 back to text."""
    return environ_value.encode("iso-8859-1").decode("utf-8")


def request_uri(protocol: str, uri: str) -> str:
    """REQUEST_URI as the app sees it: AJP has no query in its request URI."""
    return uri.partition("?")[0] if protocol == "ajp" else uri


@pytest.mark.parametrize(
    ("uri", "script_name", "path_info"),
    [
        ("/blog/caf%C3%A9/?a=1&b=%C3%A9", "/blog", "/café/"),
        ("/blog/100%25/", "/blog", "/100%/"),  # decoded once: %25 stays a literal %
        ("/blog/", "/blog", "/"),
        ("/blog", "/blog", ""),
        (
            "/blogger/x",
            "",
            "/blogger/x",
        ),  # outside the mount: the whole path, no prefix
    ],
)
def test_mod_proxy_path_is_split_at_the_mount(
    blog: Launcher, uri: str, script_name: str, path_info: str
) -> None:
    environ = blog.request(uri).json()
    assert environ["SCRIPT_NAME"] == script_name
    assert real_path(environ["PATH_INFO"]) == path_info
    assert environ["REQUEST_URI"] == request_uri(blog.protocol, uri)
    assert environ["QUERY_STRING"] == uri.partition("?")[2]


@pytest.mark.parametrize("method", METHODS)
def test_mod_scgi_path_info_is_kept_under_the_public_mount(launch, method: str) -> None:
    # SCGIMount /.pyhost-scgi/blog, reached by a mod_rewrite [PT] rule from /blog/
    launcher = launch("echo", "--method", method, "--script-name", "/blog")
    environ = launcher.request(
        "/blog/caf%C3%A9",
        script_name=b"/.pyhost-scgi/blog",
        path_info="/café".encode(),
    ).json()
    assert environ["SCRIPT_NAME"] == "/blog"
    assert real_path(environ["PATH_INFO"]) == "/café"


@pytest.mark.parametrize(("flags", "location"), [
    ((), "/blog/target?x=1"),
    (("--absolute-redirects",), "http://blog.example.org/blog/target?x=1"),
])
def test_absolute_redirects_for_mod_scgi(launch, flags, location) -> None:
    # mod_scgi would serve a path-only Location itself, under the old URL
    launcher = launch("moved", "--script-name", "/blog", *flags)
    response = launcher.request("/blog/form/")
    assert response.status.startswith("302")
    assert response.headers["Location"] == location


def test_post_body_and_query_pass_untouched(blog: Launcher) -> None:
    body = b"a=1&b=%C3%A9&raw=\x00\xff\r\n" * 1000
    environ = blog.request(
        "/blog/form/?next=%2Fblog%2F&x", method="POST", body=body
    ).json()
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["CONTENT_LENGTH"] == str(len(body))
    assert environ["body"].encode("latin-1") == body
    assert environ["QUERY_STRING"] == "next=%2Fblog%2F&x"
    assert real_path(environ["PATH_INFO"]) == "/form/"


def test_request_without_body_reads_bytes(blog: Launcher) -> None:
    # plain flup hands such a request an io.StringIO: read() returns str
    assert blog.request("/blog/").json()["body"] == ""


@pytest.mark.parametrize(("protocol", "method"), SERVERS, ids=SERVER_IDS)
def test_root_mount(launch, protocol: str, method: str) -> None:
    launcher = launch(
        "echo", "--method", method, "--script-name", "", protocol=protocol
    )
    for uri, path_info in [("/", "/"), ("/caf%C3%A9/x?y=1", "/café/x")]:
        environ = launcher.request(uri).json()
        assert environ["SCRIPT_NAME"] == ""
        assert real_path(environ["PATH_INFO"]) == path_info


@pytest.mark.parametrize(("protocol", "method"), SERVERS, ids=SERVER_IDS)
def test_quiet_one_startup_line_no_secrets(launch, protocol: str, method: str) -> None:
    launcher = launch(
        "echo",
        "--method",
        method,
        "--script-name",
        "/blog",
        env={"SECRET_KEY": "s3cr3t-value"},
        protocol=protocol,
    )
    for _request in range(3):
        launcher.request("/blog/")
    assert launcher.stop()[0] == 0
    lines = launcher.stderr().splitlines()
    assert len(lines) == 1, lines
    assert f"({protocol}, {method}" in lines[0] and "unix:" in lines[0]
    assert "s3cr3t-value" not in launcher.stderr()


# --------------------------------------------------------------------------
# Prompt shutdown on SIGTERM


def start_plain_flup(workdir: Path, module: str, **options: object) -> subprocess.Popen:
    """Plain flup, as the original recipe ran it, on workdir/plain.sock."""
    code = textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {str(workdir)!r})
        import testapps
        from flup.server.{module} import WSGIServer
        WSGIServer(testapps.rendezvous, bindAddress={str(workdir / "plain.sock")!r},
                   loggingLevel=logging.WARNING, **{options!r}).run()
    """)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def rendezvous(
    send: Callable[[str], Response], workdir: Path, n: int, timeout: float
) -> list[dict]:
    """n concurrent requests that each wait for all n to be inside the app."""
    directory = workdir / "rendezvous"
    directory.mkdir()
    uri = f"/?n={n}&dir={directory}&timeout={timeout}"
    with ThreadPoolExecutor(n) as pool:
        return [r.json() for r in pool.map(lambda _: send(uri), range(n))]


def kill_tree(proc: subprocess.Popen) -> None:
    for pid in child_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait(TIMEOUT)


def test_plain_flup_prefork_ignores_sigterm_while_idle(workdir: Path) -> None:
    proc = start_plain_flup(workdir, "scgi_fork", maxSpare=1, maxChildren=1)
    try:
        # Once a child exists the parent has its handlers and has nothing to do
        # but wait in select() for news from the child.
        wait_until(lambda: child_pids(proc.pid), message="plain flup child")
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(2)
    finally:
        kill_tree(proc)


@pytest.mark.parametrize(("protocol", "method"), SERVERS, ids=SERVER_IDS)
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_sigterm_stops_everything_within_2s(
    launch, workdir: Path, protocol: str, method: str, busy: bool
) -> None:
    launcher = launch(
        "sleep", "--method", method, "--max-children", "3", "--drain-timeout", "1", protocol=protocol
    )
    if method == "prefork":  # two spare workers, started right after READY=1
        wait_until(lambda: len(child_pids(launcher.proc.pid)) == 2, message="workers")
    workers = child_pids(launcher.proc.pid)
    if busy:
        mark = workdir / "started"
        pool = ThreadPoolExecutor(1)
        in_flight = pool.submit(launcher.request, f"/?seconds=30&mark={mark}")
        wait_until(mark.exists, message="request in flight")
    returncode, elapsed = launcher.stop()
    assert returncode == 0, launcher.stderr()
    assert elapsed < 2.0
    assert launcher.notify.receive() == "STOPPING=1"
    assert not any(is_running(pid) for pid in workers)
    assert not os.path.exists(launcher.socket_path)
    if busy:
        with pytest.raises(Exception):  # the request was cut off after the drain timeout
            in_flight.result(TIMEOUT).json()
        pool.shutdown()


@pytest.mark.parametrize(("protocol", "method"), SERVERS, ids=SERVER_IDS)
def test_a_request_in_flight_at_sigterm_finishes_within_the_drain_timeout(
    launch, workdir: Path, protocol: str, method: str
) -> None:
    launcher = launch("sleep", "--method", method, "--max-children", "3", protocol=protocol)
    mark = workdir / "started"
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(launcher.request, f"/?seconds=2&mark={mark}")
        wait_until(mark.exists, message="request in flight")
        returncode, elapsed = launcher.stop()
        assert returncode == 0, launcher.stderr()
        assert in_flight.result(TIMEOUT).json()["pid"] > 0
    # It waited for the request, not for the whole default drain timeout (30 s).
    assert 1.0 < elapsed < 10.0


def test_sigint_stops_too(launch) -> None:
    launcher = launch("echo")
    assert launcher.stop(signal.SIGINT)[0] == 0


# --------------------------------------------------------------------------
# Pool sizes


def test_plain_flup_prefork_pool_never_grows_past_max_spare(workdir: Path) -> None:
    proc = start_plain_flup(workdir, "scgi_fork", maxSpare=2, maxChildren=4)
    try:
        sock = str(workdir / "plain.sock")
        wait_until(lambda: os.path.exists(sock), message="plain flup socket")
        send = functools.partial(scgi_request, sock)
        results = rendezvous(send, workdir, n=4, timeout=0.5)
        assert len({r["pid"] for r in results}) <= 2
        assert not all(r["met"] for r in results)
    finally:
        kill_tree(proc)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_prefork_grows_to_max_children(launch, workdir: Path, protocol: str) -> None:
    launcher = launch("rendezvous", "--max-children", "4", protocol=protocol)
    results = rendezvous(launcher.request, workdir, n=4, timeout=TIMEOUT)
    assert all(r["met"] for r in results)
    assert len({r["pid"] for r in results}) == 4


def wakeups(pid: int) -> int:
    """How often the process has gone to sleep and been woken: its voluntary context switches. Not the
    involuntary ones, which count how often other processes took the CPU from it (a busy machine)."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)$", status, re.M).group(1))


def test_prefork_requests_do_not_wake_the_parent(launch) -> None:
    """flup's children wrote to the parent twice per request, waking it each time; here it wakes for
    signals, growth, and once a second to shrink the pool."""
    launcher = launch("echo", "--max-children", "4")
    launcher.request("/")
    before, started = wakeups(launcher.proc.pid), time.monotonic()
    for _request in range(300):
        launcher.request("/")
    assert wakeups(launcher.proc.pid) - before <= 10 + 2 * (time.monotonic() - started)


def test_an_idle_prefork_pool_shrinks_back_to_its_spares(launch, workdir: Path) -> None:
    launcher = launch("rendezvous", "--max-children", "4")
    assert all(r["met"] for r in rendezvous(launcher.request, workdir, n=4, timeout=TIMEOUT))
    assert len(child_pids(launcher.proc.pid)) == 4
    # One process retired a second, down to the 2 idle spares.
    wait_until(lambda: len(child_pids(launcher.proc.pid)) == 2, message="2 spare workers")
    time.sleep(1.5)
    assert len(child_pids(launcher.proc.pid)) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_threaded_serves_max_children_at_once(
    launch, workdir: Path, protocol: str
) -> None:
    launcher = launch(
        "rendezvous", "--method", "threaded", "--max-children", "4", protocol=protocol
    )
    results = rendezvous(launcher.request, workdir, n=4, timeout=TIMEOUT)
    assert all(r["met"] for r in results)
    assert {r["pid"] for r in results} == {launcher.proc.pid}
    assert len({r["thread"] for r in results}) == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_max_requests_recycles_children(launch, protocol: str) -> None:
    launcher = launch(
        "echo", "--max-children", "1", "--max-requests", "2", protocol=protocol
    )
    pids = [launcher.request("/").json()["pid"] for _request in range(6)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_max_requests_with_threaded_only_warns(launch) -> None:
    launcher = launch("echo", "--method", "threaded", "--max-requests", "5")
    pids = {launcher.request("/").json()["pid"] for _request in range(6)}
    assert pids == {launcher.proc.pid}
    assert "--max-requests 5 is ignored" in launcher.stderr()


def test_sigusr1_replaces_prefork_workers(launch) -> None:
    launcher = launch("echo", "--max-children", "1")
    first = launcher.request("/").json()["pid"]
    launcher.proc.send_signal(signal.SIGUSR1)
    wait_until(
        lambda: launcher.request("/").json()["pid"] != first, message="a new worker"
    )
    assert launcher.proc.poll() is None


# --------------------------------------------------------------------------
# Binding


def test_plain_flup_bind_failure_is_a_type_error(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = (
            "from flup.server.scgi import WSGIServer; "
            f"WSGIServer(None, bindAddress=('127.0.0.1', {taken.getsockname()[1]})).run()"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert "TypeError" in result.stderr


@pytest.mark.parametrize(("protocol", "method"), SERVERS, ids=SERVER_IDS)
def test_tcp_address_in_use_is_reported_clearly(
    launch, protocol: str, method: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        launcher = launch(
            "echo", "--method", method, bind=address, ready=False, protocol=protocol
        )
        assert launcher.proc.wait(TIMEOUT) == 1
    assert launcher.stderr().strip() == (
        f"pyhost-scgi-launcher: error: cannot listen on {address}: Address already in use"
    )


def test_live_unix_socket_is_not_stolen(launch) -> None:
    first = launch("echo")
    second = launch("echo", bind=f"unix:{first.socket_path}", ready=False)
    assert second.proc.wait(TIMEOUT) == 1
    assert "Address already in use" in second.stderr()
    assert first.request("/").json()["pid"]


def test_unix_socket_mode_stale_file_and_cleanup(launch, workdir: Path) -> None:
    path = workdir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # closed without unlink: a stale socket file
    launcher = launch("echo", "--socket-mode", "0640", bind=f"unix:{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert scgi_request(str(path)).json()["pid"]
    assert launcher.stop()[0] == 0
    assert not path.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tcp_ipv4(launch, protocol: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = launch("echo", bind=f"127.0.0.1:{port}", protocol=protocol)
    environ = launcher.request("/x", address=("127.0.0.1", port)).json()
    assert environ["PATH_INFO"] == "/x"


@pytest.mark.parametrize(("protocol", "method"), SERVERS)
def test_a_peer_not_allowed_gets_no_byte_and_an_allowed_one_is_served(launch, monkeypatch, protocol: str,
                                                                      method: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = launch("echo", "--method", method, "--allow-peer", "127.0.0.2", bind=f"127.0.0.1:{port}",
                      protocol=protocol)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as stranger:
        try:
            answer = stranger.recv(1)
        except ConnectionResetError:
            answer = b""
    assert answer == b""
    wait_until(lambda: "refused a connection from 127.0.0.1" in launcher.stderr_path.read_text())

    def connect_from_allowed_peer(address, timeout: float) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(timeout)
        sock.bind(("127.0.0.2", 0))
        sock.connect(address)
        return sock

    monkeypatch.setattr(conftest, "connect", connect_from_allowed_peer)
    assert launcher.request("/x", address=("127.0.0.1", port)).json()["PATH_INFO"] == "/x"


# --------------------------------------------------------------------------
# systemd


SOCKET_ACTIVATION_WRAPPER = textwrap.dedent("""
    # What systemd does for a .socket unit: the listening socket on fd 3,
    # LISTEN_FDS and LISTEN_PID naming the process that is exec'd.
    import os, sys
    os.dup2(int(sys.argv[1]), 3)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
""")


def launch_activated(launch, workdir: Path, app: str, *args: str, **kwargs) -> tuple[Launcher, str]:
    """Start the launcher as systemd does for a .socket unit; return it and the socket's path."""
    wrapper = workdir / "activate.py"
    wrapper.write_text(SOCKET_ACTIVATION_WRAPPER)
    path = str(workdir / "activated.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        launcher = launch(
            app,
            *args,
            bind="systemd",
            prefix=[sys.executable, str(wrapper), str(listener.fileno())],
            pass_fds=(listener.fileno(),),
            **kwargs,
        )
    return launcher, path


@pytest.mark.parametrize(("protocol", "method"), SERVERS, ids=SERVER_IDS)
def test_systemd_socket_activation(
    launch, workdir: Path, protocol: str, method: str
) -> None:
    launcher, path = launch_activated(
        launch, workdir, "echo", "--method", method, "--script-name", "/blog", protocol=protocol
    )
    environ = launcher.request("/blog/x", address=path).json()
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/blog", "/x")
    assert "LISTEN_FDS" not in environ and "NOTIFY_SOCKET" not in environ
    assert launcher.stop()[0] == 0
    assert os.path.exists(path)  # systemd's socket, not ours to remove


FLAKY_APP = textwrap.dedent("""
    # Fails to import while the file "broken" exists beside it.
    import os
    if os.path.exists(os.path.join(os.path.dirname(__file__), "broken")):
        raise RuntimeError("a dependency is down; this text may hold a secret")
    from testapps import echo as application
""")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retry_load_answers_503_and_imports_again_with_growing_delays(
    launch, workdir: Path, protocol: str
) -> None:
    (workdir / "flaky.py").write_text(FLAKY_APP)
    (workdir / "broken").touch()
    launcher, path = launch_activated(
        launch, workdir, "application", "--retry-load", "--method", "prefork",
        module="flaky", protocol=protocol, ready=False,
    )
    for attempt, delay in ((1, 1), (2, 2)):
        # Ready to systemd (nothing waits in the backlog), but saying why not serving.
        assert launcher.notify.receive() == (
            f"READY=1\nSTATUS=unavailable: the app failed to load (RuntimeError), "
            f"attempt {attempt}; answering 503, next attempt in {delay} s"
        )
        response = launcher.request("/", address=path)
        assert response.status.startswith("503"), response
        assert response.headers["Retry-After"] == str(delay)
        assert b"failed to start" in response.body and b"secret" not in response.body
    (workdir / "broken").unlink()
    assert launcher.notify.receive().startswith("READY=1\nSTATUS=serving flaky:application (")
    assert launcher.request("/x", address=path).json()["PATH_INFO"] == "/x"
    # Retried in place: still the process systemd started, never a new one.
    assert is_running(launcher.proc.pid)
    assert launcher.stderr().count("Traceback") == 2
    assert launcher.stop()[0] == 0


def test_retry_load_stops_promptly_while_unavailable(launch, workdir: Path) -> None:
    (workdir / "flaky.py").write_text(FLAKY_APP)
    (workdir / "broken").touch()
    launcher, _path = launch_activated(
        launch, workdir, "application", "--retry-load", module="flaky", ready=False
    )
    assert "STATUS=unavailable" in launcher.notify.receive()
    assert launcher.stop()[0] == 0
    assert launcher.notify.receive() == "STOPPING=1"


def test_retry_load_needs_systemd_activation(launch) -> None:
    launcher = launch("echo", "--retry-load", ready=False)
    assert launcher.proc.wait(TIMEOUT) == 2
    assert "--retry-load needs --bind systemd" in launcher.stderr()


def test_bind_systemd_without_activation_is_refused(launch) -> None:
    launcher = launch("echo", bind="systemd", ready=False)
    assert launcher.proc.wait(TIMEOUT) == 1
    assert "no socket was passed by systemd" in launcher.stderr()


def test_notify_abstract_socket(launch, workdir: Path) -> None:
    launcher = launch(
        "echo", notify_address=f"@pyhost-test-{os.getpid()}-{workdir.name}"
    )
    assert launcher.request("/").json()["pid"]
    launcher.stop()
    assert launcher.notify.receive() == "STOPPING=1"


# --------------------------------------------------------------------------
# Refusals


def test_untested_flup_version_is_refused(launch, workdir: Path) -> None:
    fake = workdir / "fake-site" / "flup-9.9.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: flup\nVersion: 9.9\n")
    launcher = launch("echo", env={"PYTHONPATH": str(fake.parent)}, ready=False)
    assert launcher.proc.wait(TIMEOUT) == 2
    lines = launcher.stderr().splitlines()
    assert len(lines) == 1 and "flup 9.9" in lines[0] and "1.0.3" in lines[0]


def test_import_error_names_the_app(workdir: Path) -> None:
    (workdir / "broken.py").write_text("import no_such_module_here\n")
    result = subprocess.run(
        [
            sys.executable,
            str(LAUNCHER),
            "--app",
            "broken:application",
            "--chdir",
            str(workdir),
            "--bind",
            f"unix:{workdir / 'broken.sock'}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "pyhost-scgi-launcher: error: cannot import --app broken:application: "
        "ModuleNotFoundError: No module named 'no_such_module_here'"
    )
    assert not (workdir / "broken.sock").exists()


def test_help_is_readable() -> None:
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0
    for option in ("--app", "--bind", "--protocol", "{scgi,fcgi,ajp}", "SIGTERM"):
        assert option in result.stdout


def test_bad_arguments_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "--app", "x:y", "--bind", "nowhere"],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "expected unix:/PATH, HOST:PORT" in result.stderr
