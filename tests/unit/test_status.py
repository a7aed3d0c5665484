"""pyhost-scgi-status (playbooks/status.yml, playbooks/logs.yml): how it reads /proc, systemd's view of an
app and Apache's logs, and the table it prints."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "playbooks/files/pyhost-scgi-status"
_LOADER = importlib.machinery.SourceFileLoader("pyhost_scgi_status", str(_PATH))
_SPEC = importlib.util.spec_from_loader("pyhost_scgi_status", _LOADER)
status = importlib.util.module_from_spec(_SPEC)
sys.modules["pyhost_scgi_status"] = status  # dataclasses look their module up there
_LOADER.exec_module(status)

# /proc/net/unix of a host serving blog (two requests accepted, one waiting in the backlog) and hello
# (listening only), with Apache's unnamed ends and an unrelated socket whose path starts like blog's.
PROC_NET_UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 24233 /run/scgi-blog/blog.sock
0000000000000000: 00000003 00000000 00000000 0001 03 24237 /run/scgi-blog/blog.sock
0000000000000000: 00000003 00000000 00000000 0001 03 24239 /run/scgi-blog/blog.sock
0000000000000000: 00000003 00000000 00000000 0001 02     0 /run/scgi-blog/blog.sock
0000000000000000: 00000003 00000000 00000000 0001 03 24238
0000000000000000: 00000003 00000000 00000000 0001 03 24240
0000000000000000: 00000002 00000000 00010000 0001 01 24250 /run/scgi-hello/hello.sock
0000000000000000: 00000002 00000000 00010000 0001 01 24260 /run/scgi-blog/blog.sock.old
0000000000000000: 00000003 00000000 00000000 0001 03 24261 /run/scgi-blog/blog.sock.old
0000000000000000: 00000002 00000000 00000000 0002 01 11111 /run/systemd/notify
"""

# /proc/net/tcp: notes listens on 127.0.0.1:8010 (0x1F4A) with one connection from Apache, whose end
# (local port 0xA1B2, remote 8010) appears too; a connection in TIME_WAIT; sshd on 22 with a client.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F4A 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 3001 1 0 100 0 0 10 0
   1: 0100007F:1F4A 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1001        0 3002 1 0 20 4 30 10 -1
   2: 0100007F:A1B2 0100007F:1F4A 01 00000000:00000000 00:00000000 00000000    33        0 3003 1 0 20 4 30 10 -1
   3: 0100007F:1F4A 0100007F:A1C0 06 00000000:00000000 03:00000F9C 00000000     0        0 0 3 0
   4: 0B00A8C0:0016 0A00A8C0:D431 01 00000000:00000000 02:000A7A54 00000000     0        0 3010 2 0 21 4 30 10 -1
"""
# tcp6: one more connection to 8010, over ::ffff:127.0.0.1.
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F4A 0000000000000000FFFF00000100007F:B000 01 00000000:00000000 00:00000000 00000000  1001 0 4001 1 0 20 4 30 10 -1
"""

SERVING = "serving demo.wsgi:application (scgi, threaded, max 4 threads, max-requests 0)"
FAILED_TO_LOAD = ("unavailable: the app failed to load (ModuleNotFoundError), attempt 3; "
                  "answering 503, next attempt in 4 s")


def test_connections_to_a_unix_socket_are_the_accepted_and_queued_ones_with_its_path() -> None:
    assert status.unix_connections(PROC_NET_UNIX, "/run/scgi-blog/blog.sock") == 3
    assert status.unix_connections(PROC_NET_UNIX, "/run/scgi-hello/hello.sock") == 0
    assert status.unix_connections(PROC_NET_UNIX, "/run/scgi-none/none.sock") == 0


def test_connections_to_a_port_are_the_established_ones_whose_local_port_it_is() -> None:
    assert status.tcp_connections([PROC_NET_TCP, PROC_NET_TCP6], 8010) == 2
    assert status.tcp_connections([PROC_NET_TCP, ""], 8010) == 1
    assert status.tcp_connections([PROC_NET_TCP, PROC_NET_TCP6], 0xA1B2) == 1
    assert status.tcp_connections([PROC_NET_TCP, PROC_NET_TCP6], 9000) == 0


def test_connections_counted_on_this_machine_match_a_live_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")

    def counted() -> int:
        return status.unix_connections(Path("/proc/net/unix").read_text(), path)

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(4)
        assert counted() == 0
        with socket.socket(socket.AF_UNIX) as served, socket.socket(socket.AF_UNIX) as waiting:
            served.connect(path)
            accepted, _address = listener.accept()
            waiting.connect(path)
            assert counted() == 2
            accepted.close()
            assert counted() == 1
            # A connection the app has not accepted yet stays in the backlog, its client gone or not.
            listener.accept()[0].close()
            assert counted() == 0


@pytest.mark.parametrize(
    ("service", "socket_unit", "expected"),
    [
        ({"ActiveState": "active", "SubState": "running", "StatusText": SERVING}, {"ActiveState": "active"}, "serving"),
        ({"ActiveState": "active", "SubState": "running", "StatusText": FAILED_TO_LOAD}, {"ActiveState": "active"},
         "unavailable: failed to load (ModuleNotFoundError), attempt 3"),
        ({"ActiveState": "active", "SubState": "running", "StatusText": ""}, {"ActiveState": "active"},
         "unavailable: active without a status"),
        ({"ActiveState": "failed", "SubState": "failed", "Result": "exit-code"}, {"ActiveState": "active"},
         "unavailable: failed (exit-code)"),
        ({"ActiveState": "activating", "SubState": "auto-restart", "Result": "oom-kill"}, {"ActiveState": "active"},
         "unavailable: restarting after oom-kill"),
        ({"ActiveState": "activating", "SubState": "start", "Result": "success"}, {"ActiveState": "active"},
         "unavailable: starting"),
        ({"ActiveState": "deactivating", "SubState": "stop-sigterm"}, {"ActiveState": "active"}, "unavailable: stopping"),
        ({"ActiveState": "inactive", "SubState": "dead"}, {"ActiveState": "active", "SubState": "listening"}, "idle"),
        ({"ActiveState": "inactive", "SubState": "dead"}, {"ActiveState": "inactive", "SubState": "dead"}, "stopped"),
        ({"ActiveState": "inactive", "SubState": "dead"}, {"ActiveState": "failed", "Result": "resources"},
         "unavailable: socket failed (resources)"),
    ],
)
def test_the_state_of_an_app_follows_its_units(service: dict, socket_unit: dict, expected: str) -> None:
    assert status.app_state({"LoadState": "loaded", **service}, {"LoadState": "loaded", **socket_unit}) == expected


def test_an_app_without_a_unit_is_not_deployed() -> None:
    assert status.app_state({"LoadState": "not-found", "ActiveState": "inactive"}, {}) == "not deployed"


def test_a_long_unavailable_status_is_clipped_to_the_state_column() -> None:
    state = status.short_unavailable("unavailable: " + "x" * 200)
    assert len(state) == status.STATE_WIDTH and state.endswith("...")


def test_systemctl_show_output_is_read_per_unit() -> None:
    shown = ("Id=scgi-blog.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\n"
             f"StatusText={SERVING}\n\n"
             "Id=scgi-blog.socket\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\n"
             "StatusText=\n")
    units = status.parse_show(shown)
    assert set(units) == {"scgi-blog.service", "scgi-blog.socket"}
    assert units["scgi-blog.service"]["StatusText"] == SERVING
    assert units["scgi-blog.socket"]["StatusText"] == ""
    assert status.app_state(units["scgi-blog.service"], units["scgi-blog.socket"]) == "serving"


def test_a_process_status_gives_its_real_uid_and_rss() -> None:
    text = "Name:\tpython3\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nVmRSS:\t   40960 kB\n"
    assert status.parse_proc_status(text) == (1001, 40960)
    # A kernel thread: no memory of its own.
    assert status.parse_proc_status("Name:\tkworker/0:1\nUid:\t0\t0\t0\t0\n") == (0, 0)


def test_processes_and_memory_are_summed_per_user(tmp_path: Path) -> None:
    for pid, uid, rss in [(10, 1001, 1024), (11, 1001, 2048), (12, 1002, 512), (13, 0, 100)]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmRSS:\t{rss} kB\n")
    (tmp_path / "self").mkdir()
    (tmp_path / "14").mkdir()  # a process that ended while the table was read
    assert status.usage_by_uid(str(tmp_path)) == {1001: (2, 3072), 1002: (1, 512), 0: (1, 100)}


def test_the_live_release_is_the_current_link_or_its_git_commit(tmp_path: Path) -> None:
    (tmp_path / "releases/0a1b2c3d4e5f").mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/0a1b2c3d4e5f")
    went_live = time.mktime((2025, 3, 4, 5, 6, 7, 0, 0, 0)) - time.timezone
    os.utime(tmp_path / "current", (went_live, went_live), follow_symlinks=False)
    assert status.live_release(str(tmp_path)) == ("0a1b2c3d4e5f", "2025-03-04 05:06")
    (tmp_path / "releases/0a1b2c3d4e5f/commit").write_text("1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d\n")
    assert status.live_release(str(tmp_path)) == ("git 1a2b3c4d5e6f", "2025-03-04 05:06")
    (tmp_path / "releases/0a1b2c3d4e5f/commit").write_text("not a commit\n")
    assert status.live_release(str(tmp_path))[0] == "0a1b2c3d4e5f"


def test_an_app_never_deployed_has_no_release(tmp_path: Path) -> None:
    assert status.live_release(str(tmp_path)) == ("-", "-")


def test_routes_probe_each_other_member_once_and_never_this_host() -> None:
    probed = []

    def probe(address: str, port: int) -> str:
        probed.append((address, port))
        return {"10.0.0.2": "up", "10.0.0.3": "refused"}[address]

    shop = [{"address": "10.0.0.2", "port": 4000, "here": False},
            {"address": "10.0.0.1", "port": 4000, "here": True},
            {"address": "10.0.0.3", "port": 4000, "here": False}]
    wiki = [{"address": "10.0.0.3", "port": 4001, "here": False}, {"address": "10.0.0.2", "port": 4000, "here": False}]
    answers = status.probe_all(shop + wiki, probe)
    assert sorted(probed) == [("10.0.0.2", 4000), ("10.0.0.3", 4000), ("10.0.0.3", 4001)]
    assert status.routes(shop, answers) == "10.0.0.2:4000 up, 10.0.0.1:4000 here, 10.0.0.3:4000 refused"
    assert status.routes(wiki, answers) == "10.0.0.3:4001 refused, 10.0.0.2:4000 up"
    assert status.probe_all(shop[1:2], probe) == {}


def test_lost_workers_of_many_apps_are_probed_at_once() -> None:
    def probe(address: str, port: int) -> str:
        time.sleep(0.2)
        return "timeout"

    members = [{"address": "10.0.0.9", "port": port, "here": False} for port in range(4000, 4020)]
    started = time.monotonic()
    assert set(status.probe_all(members, probe).values()) == {"timeout"}
    assert time.monotonic() - started < 1.0


def test_a_probe_tells_up_from_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert status.probe("127.0.0.1", port) == "up"
    assert status.probe("127.0.0.1", port) == "refused"


def test_the_table_has_fixed_width_columns_and_right_aligned_numbers() -> None:
    header = ["app", "state", "procs"]
    lines = status.format_table(header, [["blog", "serving", "5"], ["fcgi_demo", "stopped", "12"]])
    assert lines == [
        "app        state    procs",
        "blog       serving      5",
        "fcgi_demo  stopped     12",
    ]


def test_only_the_columns_that_apply_on_a_host_are_kept() -> None:
    header, rows = status.keep_columns(status.HEADER, [list("abcdefgh")], {"app", "routes"})
    assert (header, rows) == (["app", "routes"], [["a", "h"]])


def host(**fields) -> status.Host:
    return status.Host(**{"units": {}, "usage": {}, "unix_table": PROC_NET_UNIX, "tcp_tables": [PROC_NET_TCP],
                          "answers": {}, **fields})


def app(name: str, listen: dict, worker: bool = True, members: list | None = None) -> dict:
    return {"name": name, "service": f"scgi-{name}.service", "socket_unit": f"scgi-{name}.socket",
            "home": f"/nonexistent/{name}", "listen": listen, "worker": worker, "members": members or []}


BLOG = app("blog", {"kind": "unix", "address": "/run/scgi-blog/blog.sock"})
NOTES = app("notes", {"kind": "tcp", "address": "127.0.0.1:8010", "port": 8010})


def test_a_worker_row_reads_the_units_processes_and_connections_of_the_app() -> None:
    units = {"scgi-blog.service": {"LoadState": "loaded", "ActiveState": "active", "StatusText": SERVING},
             "scgi-blog.socket": {"LoadState": "loaded", "ActiveState": "active"}}
    cells = status.worker_cells(BLOG, host(units=units, usage={1001: (5, 3 * 1024 * 1024)}), 1001)
    assert cells == {"state": "serving", "release": "-", "procs": "5", "RSS MiB": "3072", "in flight": "3",
                     "deployed": "-"}
    assert status.worker_cells(NOTES, host(), 1002)["in flight"] == "1"


def test_an_app_whose_user_does_not_exist_shows_no_processes() -> None:
    cells = status.worker_cells(BLOG, host(), None)
    assert (cells["state"], cells["procs"], cells["RSS MiB"]) == ("not deployed", "-", "-")


def test_a_host_with_no_app_says_so() -> None:
    assert status.table([], host()) == ["no app of scgi_apps runs or is served here"]


def test_a_front_end_of_apps_on_other_hosts_shows_only_their_routes() -> None:
    shop = app("shop", {"kind": "tcp", "address": "0.0.0.0:4001", "port": 4001}, worker=False,
               members=[{"address": "10.0.0.2", "port": 4001, "here": False}])
    lines = status.table([shop], host(answers={("10.0.0.2", 4001): "timeout"}))
    assert lines == ["app   routes", "shop  10.0.0.2:4001 timeout"]


def test_a_worker_that_is_also_a_front_end_shows_both_and_a_dash_where_a_column_does_not_apply() -> None:
    shop = app("shop", {"kind": "tcp", "address": "10.0.0.1:4001", "port": 4001},
               members=[{"address": "10.0.0.1", "port": 4001, "here": True}])
    lines = status.table([shop, NOTES], host(units={}, answers={}))
    assert lines[0].split() == ["app", "state", "release", "procs", "RSS", "MiB", "in", "flight", "deployed", "routes"]
    column = lines[0].index("routes")
    assert lines[1][column:] == "10.0.0.1:4001 here"
    assert lines[2][column:] == "-"
    assert lines[1].index("not deployed") == lines[2].index("not deployed") == lines[0].index("state")


ACCESS_LOG = [
    '192.0.2.1 - - [29/Nov/2025:16:40:01 +0000] "GET /blog/ HTTP/1.1" 200 512 "-" "curl/8.5" 2301',
    '192.0.2.1 - - [29/Nov/2025:16:40:02 +0000] "GET /blog/boom HTTP/1.1" 500 145 "-" "curl/8.5" 10543',
    '192.0.2.1 - bob [29/Nov/2025:16:40:03 +0000] "GET /blog/\\" 503 x HTTP/1.1" 404 9 "-" "curl/8.5" 800',
    '192.0.2.1 - - [29/Nov/2025:16:40:04 +0000] "GET /blog/slow HTTP/1.1" 504 247 "-" "Mozilla/5.0 (X11) 500" 60000123',
    '192.0.2.1 - - [29/Nov/2025:16:40:05 +0000] "GET /blog/down HTTP/1.1" 503 299 "https://x/" "curl/8.5" 1200',
]


def test_requests_answered_5xx_are_told_by_their_status_field() -> None:
    assert [status.answered_5xx(line) for line in ACCESS_LOG] == [False, True, False, True, True]
    assert not status.answered_5xx("garbage 500 line")


def test_the_last_matching_lines_come_oldest_first_from_a_file_read_backwards(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    # Many lines, no newline at the end, and blocks smaller than a line: every line comes out whole.
    log.write_text("\n".join(ACCESS_LOG * 400))
    assert list(status.lines_from_end(str(log), block=7))[:5] == ACCESS_LOG[::-1]
    expected = [ACCESS_LOG[4], ACCESS_LOG[1], ACCESS_LOG[3], ACCESS_LOG[4]]
    assert status.last_matching(str(log), status.answered_5xx, 4) == expected
    assert status.last_matching(str(log), lambda line: "nothing" in line, 4) == []
    assert status.last_matching(str(tmp_path / "missing.log"), status.answered_5xx, 4) is None


def test_errors_shows_the_app_tagged_lines_and_5xx_requests_and_says_when_a_log_is_missing(tmp_path: Path) -> None:
    error_log = tmp_path / "scgi-site-blog.test-error.log"
    error_log.write_text(
        "[Sat Nov 29 16:40:02.1 2025] [proxy_scgi:error] [pid 7:tid 8] [app blog] AH01110: error reading response\n"
        "[Sat Nov 29 16:40:03.1 2025] [proxy:error] [pid 7:tid 9] [app blogs] AH00957: connect to backend failed\n"
        "[Sat Nov 29 16:40:04.1 2025] [mpm_event:notice] [pid 6:tid 6] [app -] AH00489: resuming normal operations\n"
        # Another app (or a client, through a URL) writes the tag into its own line's message: not blog's.
        "[Sat Nov 29 16:40:05.1 2025] [proxy_scgi:error] [pid 7:tid 8] [app shop] AH01110: [app blog] forged\n"
        "[app blog] [proxy:error] [pid 7:tid 9] [app blog] forged at the start\n"
    )
    output = status.errors("blog", str(error_log), str(tmp_path / "scgi-blog-access.log"), 50)
    assert output == [
        f"last 50 lines tagged [app blog] of the site's error log ({error_log}):",
        "  [Sat Nov 29 16:40:02.1 2025] [proxy_scgi:error] [pid 7:tid 8] [app blog] AH01110: error reading response",
        f"last 50 requests answered 5xx: no log yet ({tmp_path / 'scgi-blog-access.log'})",
    ]
    (tmp_path / "scgi-blog-access.log").write_text(ACCESS_LOG[0] + "\n")
    assert status.errors("blog", str(error_log), str(tmp_path / "scgi-blog-access.log"), 1)[-1] == "  none"


def test_the_command_line_has_help_and_refuses_a_bad_number_of_lines() -> None:
    shown = subprocess.run([sys.executable, str(_PATH), "--help"], capture_output=True, text=True, check=True)
    assert "table APPS_JSON" in shown.stdout and "errors --app NAME" in shown.stdout
    refused = subprocess.run([sys.executable, str(_PATH), "errors", "--app", "blog", "--error-log", "e",
                              "--access-log", "a", "--lines", "0"], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "expected a number >= 1, not '0'" in refused.stderr
