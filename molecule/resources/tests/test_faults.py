"""A mistake in one app or one directive stays contained, and a removed app leaves nothing behind."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

from conftest import APPS, DJANGO_APPS, HELLO, HOST_NAME, fetch, probe_path, run_site, site_vhost_path, sleep_path
from flood import BUDGETS, assert_contained, budgets, flood, refused_microseconds, seconds_until

testinfra_hosts = [HOST_NAME]
# The plain WSGI app of the scenario; its import obeys this file (see hello.py).
HELLO_APP = next(app for app in APPS if app["name"] == "hello")
OTHER_APPS = [app for app in APPS if app is not HELLO_APP]
HELLO_SERVICE = "scgi-hello.service"
START_CONTROL = "/srv/scgi/hello/state/start-control"


def all_apps_answer(apps: list[dict[str, Any]] = APPS) -> bool:
    return all(fetch(app, probe_path(app)).status == 200 for app in apps)


def unit_property(host, name: str) -> str:
    return host.check_output(f"systemctl show --property={name} --value {HELLO_SERVICE}")


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll, bounded: the bound is a hang guard, not a speed requirement."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


@contextlib.contextmanager
def hello_starts(host, how: str) -> Iterator[None]:
    """Make hello's next imports `fail` or `sleep N`; afterwards it starts normally again."""
    host.run_test(f"echo '{how}' > {START_CONTROL} && chmod 0644 {START_CONTROL}")
    try:
        yield
    finally:
        host.run_test(f"rm -f {START_CONTROL} && systemctl restart {HELLO_SERVICE}")
        assert fetch(HELLO_APP, probe_path(HELLO_APP)).status == 200


def test_an_app_that_starts_slowly_delays_nobody_else(host):
    with hello_starts(host, "sleep 20"), ThreadPoolExecutor(1) as pool:
        host.run_test(f"systemctl restart --no-block {HELLO_SERVICE}")
        wait_for(lambda: unit_property(host, "ActiveState") == "activating", 10, "hello to be starting")
        # Sent first: it waits in hello's socket backlog until hello is ready, and is not refused.
        waiting = pool.submit(fetch, HELLO_APP, probe_path(HELLO_APP))
        assert all_apps_answer(OTHER_APPS)
        # Every other app answered while hello was still starting, and its request still waits.
        assert unit_property(host, "ActiveState") == "activating"
        assert not waiting.done()
        assert waiting.result().status == 200
        assert unit_property(host, "ActiveState") == "active"


def test_an_app_that_fails_at_start_answers_503_and_is_retried_with_growing_delays(host):
    since = host.check_output("date +%s")
    with hello_starts(host, "fail"):
        host.run_test(f"systemctl restart {HELLO_SERVICE}")
        assert re.fullmatch(r"unavailable: the app failed to load \(RuntimeError\), attempt \d+; "
                            r"answering 503, next attempt in \d+ s", unit_property(host, "StatusText"))
        main_pid = unit_property(host, "MainPID")
        resp = fetch(HELLO_APP, probe_path(HELLO_APP))
        # The launcher's own quick answer, through Apache: not a timeout, not Apache's proxy error.
        assert resp.status == 503
        assert resp.headers["Retry-After"].isdigit()
        assert "failed to start; it is retried automatically" in resp.text
        assert all_apps_answer(OTHER_APPS)
        wait_for(lambda: "attempt 3;" in unit_property(host, "StatusText"), 30, "hello's third attempt")
        journal = host.check_output(f"journalctl --no-pager -o cat -u {HELLO_SERVICE} --since @{since}")
        delays = [line.rsplit(" in ", 1)[1] for line in journal.splitlines() if "next attempt in" in line]
        assert delays[:3] == ["1 s", "2 s", "4 s"], journal
        assert "told to fail at start" in journal  # the traceback is in the app's journal
        # Once the cause is gone, the next attempt serves, in the same process: nobody restarted it.
        host.run_test(f"rm {START_CONTROL}")
        wait_for(lambda: fetch(HELLO_APP, probe_path(HELLO_APP)).status == 200, 30, "hello to recover")
        assert unit_property(host, "StatusText").startswith("serving hello:application (")
        assert unit_property(host, "MainPID") == main_pid
        # The re-executed launcher kept the app's environment.
        greeting = HELLO_APP.get("env", {}).get("HELLO_GREETING")
        assert fetch(HELLO_APP, probe_path(HELLO_APP)).json()["greeting"] == greeting
        assert all_apps_answer()


def test_an_app_that_cannot_start_fails_its_own_deploy_and_absent_removes_it(host):
    broken = {"name": "broken", "server_name": "broken.test", "source": {"path": HELLO},
              "wsgi": "hello:no_such_callable", "mount": "/"}
    status, output = run_site(scgi_apps=[*APPS, broken])
    assert status != 0
    assert ("App broken did not load its code (hello:no_such_callable): unavailable: the app failed to load "
            "(AttributeError), attempt ") in output
    assert "failed=1" in output
    assert all_apps_answer()
    journal = host.run("journalctl --no-pager -u scgi-broken.service").stdout
    assert "hello:no_such_callable" in journal

    status, output = run_site(scgi_apps=[*APPS, {"name": "broken", "state": "absent"}])
    assert status == 0, output[-3000:]
    for path in ["/srv/scgi/broken", "/etc/scgi/broken", "/var/lib/pyhost-scgi/broken", "/run/scgi-broken",
                 "/etc/systemd/system/scgi-broken.service", "/etc/systemd/system/scgi-broken.socket",
                 "/etc/apache2/sites-available/scgi-site-broken.test.conf",
                 "/etc/apache2/sites-enabled/scgi-site-broken.test.conf", "/etc/apache2/pyhost-scgi/scgi-site-broken.test"]:
        assert not host.file(path).exists, path
    assert not host.user("broken").exists
    assert not host.group("broken").exists
    assert host.run("systemctl list-units --all --no-legend 'scgi-broken*'").stdout.strip() == ""
    assert all_apps_answer()


def test_a_hostile_archive_and_a_failing_pip_leave_their_apps_out_and_the_others_deployed(host, tmp_path):
    archive = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(HELLO, arcname=".")
        disk = tarfile.TarInfo("disk")  # the host's first disk, if it came out
        disk.type, disk.devmajor, disk.devminor = tarfile.BLKTYPE, 8, 0
        tar.addfile(disk)
        escape = tarfile.TarInfo("public/shadow")
        escape.type, escape.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(escape)
    hostile = {"name": "hostile", "server_name": "hostile.test", "source": {"archive": str(archive)},
               "wsgi": "hello:application", "static": {"source": "public"}}
    # An app whose packages pip cannot install fails later in the same run, after its environment was written.
    no_package = {"name": "nopackage", "server_name": "nopackage.test", "source": {"path": HELLO},
                  "wsgi": "hello:application", "packages": ["pyhost-scgi-no-such-package==0.0.1"]}
    # In the same run, hello gets a new environment: its deploy and restart must not be lost to the others' failures.
    greeting = "deployed beside a hostile archive"
    apps = [{**app, "env": {**app.get("env", {}), "HELLO_GREETING": greeting}} if app is HELLO_APP else app
            for app in APPS]
    # An app whose git branch is gone: only its own deploy fails.
    repository = tmp_path / "nobranch.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repository)], check=True, timeout=60)
    no_branch = {"name": "nobranch", "server_name": "nobranch.test", "wsgi": "hello:application",
                 "source": {"git": {"repo": f"file://{repository}", "version": "deleted-branch"}}}
    # A Django app whose database is out of reach: its migrations fail, and only its own deploy.
    django_app = DJANGO_APPS[0]
    no_database = {"name": "nodatabase", "server_name": "nodatabase.test", "source": django_app["source"],
                   "wsgi": django_app["wsgi"], "django": django_app["django"],
                   "env": {"DEMO_DATABASE_HOST": "192.0.2.1"}}  # TEST-NET-1, and the sandbox allows localhost only
    # And a new app, whose site Apache has never served: the front ends serve it all the same, over HTTPS.
    neighbour = {"name": "neighbour", "server_name": "neighbour.test", "source": {"path": HELLO},
                 "wsgi": "hello:application", "tls": {"certificate": "self_signed"}}
    status, output = run_site(scgi_apps=[*apps, no_branch, hostile, no_package, no_database, neighbour])
    assert status != 0
    assert fetch(neighbour, "/").json()["user"] == "neighbour"
    neighbour_pem = host.file("/etc/apache2/pyhost-scgi-tls/scgi-site-neighbour.test.pem")
    assert neighbour_pem.exists
    assert "App nobranch: its git source could not be fetched." in output, output[-3000:]
    assert "field 'source.git.version': deleted-branch is not a branch, tag or commit of" in output
    assert not host.file("/srv/scgi/nobranch/code").exists
    assert "App nodatabase: its database migrations failed." in output, output[-3000:]
    assert not host.file("/etc/systemd/system/scgi-nodatabase.service").exists
    # One message for the run, each app with its step, in the order of the steps.
    assert ("App nobranch: its git source could not be fetched. App hostile: its code was not unpacked. "
            "App nopackage: pip could not install its packages. App nodatabase: its database migrations failed. "
            "The other apps were deployed.") in output, output[-3000:]
    assert "app nopackage: pip failed:" in output, output[-3000:]
    assert not host.file("/etc/systemd/system/scgi-nopackage.service").exists
    assert "app hostile: the code archive is refused: 'disk': a device node" in output, output[-3000:]
    assert host.run("find /srv/scgi/hostile -type b -o -type c -o -type l").stdout == ""
    assert not host.file("/srv/scgi/hostile/code/hello.py").exists
    assert not host.file("/etc/systemd/system/scgi-hostile.service").exists
    assert fetch(HELLO_APP, probe_path(HELLO_APP)).json()["greeting"] == greeting
    assert all_apps_answer()
    status, output = run_site(scgi_apps=[*APPS, {"name": "hostile", "state": "absent"},
                                         {"name": "nopackage", "state": "absent"}, {"name": "neighbour", "state": "absent"},
                                         {"name": "nobranch", "state": "absent"}, {"name": "nodatabase", "state": "absent"}])
    assert status == 0, output[-3000:]
    assert not host.file("/srv/scgi/hostile").exists
    assert not host.file("/srv/scgi/nopackage").exists
    # The key and certificate of a site whose app went, removed with its vhost.
    assert not neighbour_pem.exists
    assert fetch(HELLO_APP, probe_path(HELLO_APP)).json()["greeting"] == HELLO_APP.get("env", {}).get("HELLO_GREETING")


def test_a_directive_apache_rejects_never_reaches_the_live_server(host):
    vhost = site_vhost_path(APPS[0])
    before = host.file(vhost).content_string
    status, output = run_site(scgi_site_extra_directives=["NoSuchDirective on"])
    assert status != 0
    assert "Invalid command 'NoSuchDirective'" in output
    assert host.file(vhost).content_string == before
    host.run_test("apache2ctl configtest")
    assert all_apps_answer()


# Flooded: the plain WSGI app behind mod_proxy, and the app behind mod_scgi (the classic recipe).
FLOODED = [HELLO_APP, next(app for app in APPS if app.get("apache_client") == "mod_scgi")]


@pytest.mark.parametrize("flooded_app", FLOODED, ids=[app["name"] for app in FLOODED])
def test_a_flood_of_slow_requests_to_one_app_leaves_the_others_served(host, flooded_app):
    threads, budget = budgets(host.file(BUDGETS).content_string)
    name = flooded_app["name"]
    assert budget[name] == 2 * flooded_app["max_children"]  # concurrency auto, one worker host
    other = next(app for app in DJANGO_APPS if app is not flooded_app)
    assert all_apps_answer([flooded_app, other])  # and each site's certificate is read once, before the threads

    def slow_page() -> tuple[int, str | None]:
        resp = fetch(flooded_app, sleep_path(flooded_app, 5))
        return resp.status, resp.headers.get("Retry-After")

    def other_app() -> tuple[int, str | None]:
        return fetch(other, probe_path(other)).status, None

    # Twice as many clients as Apache has threads ask the app for a page that takes 5 s.
    access_log = f"/var/log/apache2/scgi-{name}-access.log"
    logged = int(host.check_output(f"stat -c %s {access_log}"))
    flooded, measured = flood(slow_page, other_app, clients=2 * threads, seconds=12)
    refused = refused_microseconds(host.check_output(f"tail -c +{logged + 1} {access_log}"))
    assert_contained(flooded, measured, budget[name], seconds=12, slow=5, refused=refused)
    # Once the flood is over, the app answers again as soon as the requests it had taken have finished:
    # its budget is twice what it serves at once, so at most twice the slow page's 5 s.
    assert seconds_until(lambda: (fetch(flooded_app, probe_path(flooded_app)).status, None), 30) is not None
    assert all_apps_answer()
