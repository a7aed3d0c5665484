"""Many hosts: one front end balancing a Django app over two workers and a WSGI app on one of them,
a PostgreSQL host, and an outsider that must get nothing from any app port."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import testinfra
import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "molecule/resources/tests"))
from flood import BUDGETS, assert_contained, budgets, flood, refused_microseconds, seconds_until  # noqa: E402 - the scenarios' shared flood, found through the line above

LOAD_PAUSE = 0.05
FE, W1, W2, PG, OUT = (testinfra.get_host(f"docker://pyhost-cluster-{name}")
                       for name in ("fe1", "w1", "w2", "pg", "out"))
WORKERS = {"pyhost-cluster-w1": W1, "pyhost-cluster-w2": W2}

# Run on the front end: requests through its Apache, each answer's status and JSON (or text).
CLIENT = textwrap.dedent("""
    import json, sys, urllib.request, urllib.error
    from concurrent.futures import ThreadPoolExecutor
    host, path, count, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cookie = sys.argv[5] if len(sys.argv) > 5 else ""
    def one(_):
        request = urllib.request.Request("http://127.0.0.1" + path, headers={"Host": host, "Cookie": cookie})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read().decode()
                return [response.status, json.loads(body) if "json" in response.headers["Content-Type"] else body[:200]]
        except urllib.error.HTTPError as error:
            return [error.code, None]
        except Exception as error:
            return [type(error).__name__, None]
    with ThreadPoolExecutor(workers) as pool:
        print(json.dumps(list(pool.map(one, range(count)))))
""")


def through_front_end(host: str, path: str, count: int = 1, workers: int = 1, cookie: str = "") -> list:
    command = FE.run("python3 -c {} {} {} {} {} {}".format(*(map(_quote, [CLIENT, host, path, count, workers, cookie]))))
    assert command.rc == 0, command.stderr
    return json.loads(command.stdout)


def _quote(value: object) -> str:
    return "'" + str(value).replace("'", "'\\''") + "'"


def start_shop_again(*workers) -> None:
    """Start the shop on workers, then wait (bounded) until the front end's health checks send it requests
    again: every scgi_site_health_interval (5 s)."""
    for worker in workers:
        worker.check_output("systemctl start scgi-shop.socket scgi-shop.service")
    deadline = time.monotonic() + 30
    while {body["host"] for status, body in through_front_end("shop.test", "/echo/", 8, 4) if status == 200} != set(WORKERS):
        assert time.monotonic() < deadline, "the front end does not send requests to both workers again"
        time.sleep(1)


def test_the_shop_is_served_by_both_workers_and_hello_by_its_one():
    answers = through_front_end("shop.test", "/echo/", 20, 4)
    assert {status for status, _body in answers} == {200}
    assert {body["host"] for _status, body in answers} == set(WORKERS)
    assert {body["user"] for _status, body in answers} == {"shop"}
    answers = through_front_end("hello.test", "/", 10, 4)
    assert {(status, body["host"]) for status, body in answers} == {(200, "pyhost-cluster-w1")}
    assert not W2.file("/etc/systemd/system/scgi-hello.service").exists
    assert not W2.user("hello").exists


def from_front_end(site: str, path: str) -> tuple[int, str | None]:
    """One request through the front end's Apache, from this machine: its status and Retry-After."""
    conn = http.client.HTTPConnection("172.30.77.10", 80, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": site, "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


def test_a_flood_of_slow_requests_to_the_shop_leaves_hello_served_through_the_balancer():
    threads, budget = budgets(FE.file(BUDGETS).content_string)
    assert budget["shop"] == 2 * (3 + 3)  # twice its 3 processes on each of its two workers
    access_log = "/var/log/apache2/scgi-shop-access.log"
    logged = int(FE.check_output(f"stat -c %s {access_log}"))
    flooded, measured = flood(lambda: from_front_end("shop.test", "/sleep/?seconds=5"),
                              lambda: from_front_end("hello.test", "/"), clients=2 * threads, seconds=12)
    refused = refused_microseconds(FE.check_output(f"tail -c +{logged + 1} {access_log}"))
    # hello, on w1 beside the shop, was served throughout.
    assert_contained(flooded, measured, budget["shop"], seconds=12, slow=5, refused=refused)
    assert seconds_until(lambda: from_front_end("shop.test", "/echo/"), 30) is not None


def test_the_outsider_gets_nothing_from_any_app_port():
    probe = textwrap.dedent("""
        import socket, sys
        try:
            with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
                s.settimeout(3)
                print("data" if s.recv(1) else "closed")
        except OSError as error:
            print(type(error).__name__)
    """)
    for address in ("172.30.77.11", "172.30.77.12"):
        for port in (4001, 4002):
            answer = OUT.check_output(f"python3 -c {_quote(probe)} {address} {port}")
            assert answer in {"TimeoutError", "ConnectionRefusedError"}, (address, port, answer)
    # The front end reaches the shop's port, not a port of an app the worker does not run.
    assert FE.check_output(f"python3 -c {_quote(probe)} 172.30.77.12 4002") == "ConnectionRefusedError"


def test_on_the_front_end_only_apache_and_root_reach_the_apps_ports_and_read_where_they_are():
    """The workers admit the front end's address: anyone else on the front end would speak for Apache (send
    REMOTE_USER or HTTPS: on) but for the front end's own table, and the app parts name the workers' ports."""
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()"
    for address, port in (("172.30.77.11", 4001), ("172.30.77.12", 4001), ("172.30.77.11", 4002)):
        for user, admitted in (("nobody", False), ("www-data", True), ("root", True)):
            connected = FE.run(f"runuser -u {user} -- python3 -c {_quote(probe)} {address} {port}")
            assert (connected.rc == 0) == admitted, (user, address, port, connected.stderr)
            if not admitted:
                assert "ConnectionRefusedError" in connected.stderr, connected.stderr
    for part in FE.check_output("find /etc/apache2/pyhost-scgi -name '*.conf'").split():
        assert (FE.file(part).user, FE.file(part).mode) == ("root", 0o640), part
    assert FE.file("/etc/apache2/pyhost-scgi").mode == 0o750
    # Fail closed: Debian's nftables.service flushes the whole ruleset when it starts and stops; through its drop-in
    # it keeps the front end's table each time, on a host that is no worker.
    for action in ("start", "stop"):
        FE.check_output(f"systemctl {action} nftables.service")
        assert FE.run("nft list table inet pyhost_scgi_frontend").rc == 0, action
        connected = FE.run(f"runuser -u nobody -- python3 -c {_quote(probe)} 172.30.77.11 4001")
        assert "ConnectionRefusedError" in connected.stderr, (action, connected.stderr)


def test_without_the_firewall_the_launcher_still_refuses_strangers():
    W1.check_output("nft delete table inet pyhost_scgi")
    try:
        probe = textwrap.dedent("""
            import socket
            with socket.create_connection(("172.30.77.11", 4001), timeout=3) as s:
                s.sendall(b"70:CONTENT_LENGTH\\x000\\x00SCGI\\x001\\x00REQUEST_METHOD\\x00GET\\x00REQUEST_URI\\x00/\\x00,")
                try:
                    print(len(s.recv(100)))
                except ConnectionResetError:
                    print(0)
        """)
        assert OUT.check_output(f"python3 -c {_quote(probe)}") == "0"
        assert "refused a connection from 172.30.77.30" in W1.check_output("journalctl -u scgi-shop --no-pager -o cat")
    finally:
        W1.check_output("systemctl restart pyhost-scgi-firewall.service")
    assert W1.run("nft list set inet pyhost_scgi remote_ports").rc == 0


def test_a_stopped_worker_costs_no_request_and_the_status_shows_it_on_both_sides():
    W1.check_output("systemctl stop scgi-shop.socket scgi-shop.service")
    try:
        answers = through_front_end("shop.test", "/ping/", 500, 8)
        assert [status for status, _body in answers].count(200) == 500, answers[:5]
        # status.yml: the worker says the app is stopped, the front end that it routes to the other worker only.
        status, output = run_playbook("playbooks/status.yml")
        assert status == 0, output[-3000:]
        assert re.search(r"shop +stopped ", output), output[-3000:]
        assert re.search(r"shop +172\.30\.77\.11:4001 refused, 172\.30\.77\.12:4001 up", output), output[-3000:]
        assert re.search(r"hello +172\.30\.77\.11:4002 up", output), output[-3000:]
    finally:
        start_shop_again(W1)


def test_static_files_are_served_by_the_front_end_with_every_worker_stopped():
    css = "/srv/scgi/shop/static/admin/css/base.css"
    assert FE.file(css).sha256sum == W1.file(css).sha256sum
    for worker in WORKERS.values():
        worker.check_output("systemctl stop scgi-shop.socket scgi-shop.service")
    try:
        assert through_front_end("shop.test", "/static/admin/css/base.css")[0][0] == 200
    finally:
        start_shop_again(*WORKERS.values())


UPLOAD = textwrap.dedent("""
    import json, sys, urllib.request, uuid
    from concurrent.futures import ThreadPoolExecutor
    def one(number):
        boundary = uuid.uuid4().hex
        content = f"upload {number} {uuid.uuid4()}"
        body = (f"--{boundary}\\r\\nContent-Disposition: form-data; name=\\"file\\"; filename=\\"note.txt\\"\\r\\n"
                f"Content-Type: text/plain\\r\\n\\r\\n{content}\\r\\n--{boundary}--\\r\\n").encode()
        request = urllib.request.Request("http://127.0.0.1/upload/", data=body, headers={
            "Host": "shop.test", "Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            saved = json.loads(response.read())
        request = urllib.request.Request("http://127.0.0.1" + saved["url"], headers={"Host": "shop.test"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = response.read().decode()
        return [saved["host"], saved["name"], served == content]
    with ThreadPoolExecutor(4) as pool:
        print(json.dumps(list(pool.map(one, range(12)))))
""")


def test_uploads_through_either_worker_land_in_the_shared_media_and_the_front_end_serves_them():
    uploads = json.loads(FE.check_output(f"python3 -c {_quote(UPLOAD)}"))
    assert {host for host, _name, _served in uploads} == set(WORKERS)
    assert all(served for _host, _name, served in uploads)
    # The shop user has the same id on both workers (uid: 2001): either may
    # change what the other wrote. The front end has no such user; its
    # Apache reads through the group.
    for worker in WORKERS.values():
        assert (worker.user("shop").uid, worker.group("shop").gid) == (2001, 2001)
    on_front_end = FE.file(f"/srv/scgi/shop/media/{uploads[0][1]}")
    assert (on_front_end.uid, on_front_end.group, on_front_end.mode) == (2001, "www-data", 0o640)


def test_a_login_made_on_one_worker_is_valid_on_the_other():
    W1.check_output("scgi-run shop python -m django shell -c {}".format(_quote(
        "from django.contrib.auth.models import User; "
        "alice = User.objects.get_or_create(username='alice')[0]; alice.is_staff = True; "  # the admin's login wants staff
        "alice.set_password('pw-cluster'); alice.save()")))
    login = textwrap.dedent("""
        import http.cookiejar, re, urllib.parse, urllib.request
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        def request(path, data=None):
            return urllib.request.Request("http://127.0.0.1" + path, data=data, headers={"Host": "shop.test"})
        page = opener.open(request("/admin/login/")).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "alice", "password": "pw-cluster",
                                       "next": "/admin/"}).encode()
        opener.open(request("/admin/login/", form))
        print("; ".join(f"{c.name}={c.value}" for c in jar))
    """)
    cookie = FE.check_output(f"python3 -c {_quote(login)}")
    assert "sessionid=" in cookie
    answers = through_front_end("shop.test", "/echo/", 20, 4, cookie)
    assert {body["host"] for _status, body in answers} == set(WORKERS)
    assert all(body["authenticated"] for _status, body in answers)
    # Both workers hold the same key; only one of them migrated.
    keys = {worker.file("/etc/scgi/shop/django-secret-key.env").sha256sum for worker in WORKERS.values()}
    assert len(keys) == 1


def run_site(scgi_apps: list, **extra_vars: object) -> tuple[int, str]:
    """Run the collection's site.yml on the scenario's hosts with another scgi_apps (and more extra vars)."""
    return run_playbook("site.yml", scgi_apps=scgi_apps, **extra_vars)


def run_playbook(playbook: str, **extra_vars: object) -> tuple[int, str]:
    """Run one of the collection's playbooks on the scenario's hosts with extra vars."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", json.dumps(extra_vars),
         f"{project}/{playbook}"],
        check=False, capture_output=True, text=True, timeout=900,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": f"{project}/collections", "ANSIBLE_FORCE_COLOR": "0"})
    return result.returncode, result.stdout + result.stderr


def scenario_apps() -> tuple[dict, dict]:
    shop, hello = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_variables(
        "pyhost-cluster-fe1")["scgi_apps"]
    return shop, hello


def load(targets: list[tuple[str, str]], stop: threading.Event) -> list[tuple[str, object, object, object]]:
    """One client per (host name, path) through the front end, from this machine, until stop (at most
    960 s, longer than run_playbook lets a run take, and 1,000,000 requests): (host name, status or error kind,
    serving worker, release) per request. Each client waits LOAD_PAUSE between requests: about 20 a second,
    enough to see any gap of a restart, and not so many that the load starves the run it watches of the
    machine's two cores (bench/deploy-under-load loads as fast as the apps answer)."""
    deadline = time.monotonic() + 960
    answers: list[tuple[str, object, object, object]] = []

    def client(site: str, path: str) -> None:
        while not stop.is_set() and time.monotonic() < deadline and len(answers) < 1_000_000:
            conn = http.client.HTTPConnection("172.30.77.10", 80, timeout=30)
            try:
                # Apache closes first: the TIME_WAITs are the front end's, and do not use up this
                # machine's ephemeral ports.
                conn.request("GET", path, headers={"Host": site, "Connection": "close"})
                resp = conn.getresponse()
                body = json.loads(resp.read()) if resp.status == 200 else {}
                answers.append((site, resp.status, body.get("host"), body.get("release")))
            except (OSError, http.client.HTTPException) as error:
                answers.append((site, type(error).__name__, None, None))
            finally:
                conn.close()
            stop.wait(LOAD_PAUSE)

    with ThreadPoolExecutor(len(targets)) as pool:
        for site, path in targets:
            pool.submit(client, site, path)
    return answers


def unit_time(host, prop: str) -> int:
    """A timestamp of scgi-shop.service, in microseconds of the (shared) monotonic clock."""
    return int(host.check_output(f"systemctl show --property={prop}Monotonic --value scgi-shop.service"))


def under_load(action):
    """Run action() (a playbook run) with 6 clients on the shop and 2 on hello: its result and the answers."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as runner:
        loading = runner.submit(load, [("shop.test", "/echo/")] * 6 + [("hello.test", "/")] * 2, stop)
        try:
            time.sleep(2)
            result = action()
            time.sleep(2)
            load_ended_first = loading.done()
        finally:
            stop.set()
        answers = loading.result()
        assert not load_ended_first, f"the load reached its bound before the run ended: {len(answers)} requests"
        return result, answers


def test_a_rolling_deploy_under_load_fails_no_request_and_restarts_one_worker_at_a_time(tmp_path):
    shop, hello = scenario_apps()
    releases = {}
    for app in (shop, hello):
        code = tmp_path / app["name"]
        shutil.copytree(app["source"]["path"], code, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
        releases[app["name"]] = uuid.uuid4().hex
        (code / "release.txt").write_text(releases[app["name"]] + "\n")
        app["source"] = {"path": str(code)}
    (rc, output), answers = under_load(lambda: run_site([shop, hello], scgi_rolling_batch=1))
    assert rc == 0, output[-6000:]
    assert Counter(status for _site, status, _worker, _release in answers) == {200: len(answers)}
    assert len(answers) > 100
    # Every worker ends on the new release; the shop's on w2 stopped only
    # once the one on w1 was serving again.
    for worker in WORKERS.values():
        assert worker.file("/srv/scgi/shop/code/release.txt").content_string.strip() == releases["shop"]
    assert unit_time(W2, "ActiveExitTimestamp") > unit_time(W1, "ActiveEnterTimestamp")
    served = {(body["host"], body["release"]) for _status, body in through_front_end("shop.test", "/echo/", 20, 4)}
    assert served == {(name, releases["shop"]) for name in WORKERS}, output[-8000:]
    # The front end uses both workers again, one request after another too: with bybusyness, a count of requests
    # in flight that lost a decrement under the load left one unused (seen once in four runs).
    assert {body["host"] for _status, body in through_front_end("shop.test", "/echo/", 4, 1)} == set(WORKERS)
    assert W1.run("nft list set inet pyhost_scgi draining").stdout.count("elements") == 0


def test_a_rolling_rollback_under_load_fails_no_request_and_puts_the_scenarios_release_back():
    """After the rolling deploy above: its releases go, the scenario's (which has no release.txt) come back."""
    (rc, output), answers = under_load(lambda: run_playbook("rollback.yml", app="shop,hello", scgi_rolling_batch=1))
    assert rc == 0, output[-6000:]
    assert Counter(status for _site, status, _worker, _release in answers) == {200: len(answers)}
    assert len(answers) > 100
    for worker in WORKERS.values():
        assert not worker.file("/srv/scgi/shop/code/release.txt").exists
    assert not W1.file("/srv/scgi/hello/code/release.txt").exists
    assert unit_time(W2, "ActiveExitTimestamp") > unit_time(W1, "ActiveEnterTimestamp")
    served = {(body["host"], body["release"]) for _status, body in through_front_end("shop.test", "/echo/", 20, 4)}
    assert served == {(name, None) for name in WORKERS}, output[-8000:]


def new_release(app: dict, directory) -> str:
    """Give app (in place) a copy of its code with a release.txt the app reports; return the release."""
    code = directory / app["name"]
    shutil.copytree(app["source"]["path"], code, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
    release = uuid.uuid4().hex
    (code / "release.txt").write_text(release + "\n")
    app["source"] = {"path": str(code)}
    return release


def test_a_fifo_or_a_huge_sparse_file_in_an_apps_static_files_leaves_them_as_they_were_and_the_code_deploys(tmp_path):
    shop, hello = scenario_apps()
    release = new_release(shop, tmp_path)
    # Each app's static files are its own directory: its code can put a FIFO there at run time, or a sparse file
    # of 10 TB, which would fill the worker's disk, the controller's and the front end's if packed as it reads.
    W1.check_output("runuser -u hello -- mkfifo /srv/scgi/hello/static/pipe"
                    " && runuser -u shop -- truncate --size=10T /srv/scgi/shop/static/huge")
    try:
        rc, output = run_site([shop, hello])
    finally:
        W1.check_output("rm -f /srv/scgi/hello/static/pipe /srv/scgi/shop/static/huge")
    assert rc != 0
    assert "App hello: a front end refused its static files." in output, output[-3000:]
    assert "app hello: the static archive is refused: './pipe': a FIFO" in output, output[-3000:]
    assert "App shop: its static files could not be packed on its first worker." in output, output[-3000:]
    assert (re.search(r"app shop: its static files take 1099511[0-9]{7} bytes", output)
            and "more than scgi_site_static_max_size (1073741824)" in output), output[-3000:]
    # The front end kept both apps' static files, served them, and served the shop's new release from both workers.
    assert not FE.file("/srv/scgi/hello/static/pipe").exists
    assert not FE.file("/srv/scgi/shop/static/huge").exists
    assert W1.file("/var/lib/pyhost-scgi/shop/static.tar").size < 100 * 2**20
    assert through_front_end("hello.test", "/static/hello.txt")[0][0] == 200
    assert through_front_end("shop.test", "/static/admin/css/base.css")[0][0] == 200
    served = {(body["host"], body["release"]) for _status, body in through_front_end("shop.test", "/echo/", 20, 4)}
    assert served == {(name, release) for name in WORKERS}


def test_a_rolling_deploy_that_one_app_fails_stops_there_with_the_other_app_back_in_the_balancer(tmp_path):
    shop, hello = scenario_apps()
    del hello["workers"]  # hello on both workers, as the shop
    rc, output = run_site([shop, hello])
    assert rc == 0, output[-3000:]
    release = new_release(hello, tmp_path)
    broken = {**shop, "wsgi": "demo.wsgi:no_such_callable"}
    try:
        (rc, output), answers = under_load(lambda: run_site([broken, hello], scgi_rolling_batch=1))
        assert rc != 0
        assert "App shop did not load its code (demo.wsgi:no_such_callable)" in output, output[-3000:]
        # Nothing failed under load: the shop that did not load on w1 stayed out of the balancer.
        assert Counter(status for _site, status, _worker, _release in answers) == {200: len(answers)}
        # The roll stopped at w1; hello came back there, and the front end sends it requests again.
        assert W1.run("nft list set inet pyhost_scgi draining").stdout.count("4002") == 0
        assert "4001" in W1.check_output("nft list set inet pyhost_scgi draining")
        served = {(body["host"], body["release"]) for _status, body in through_front_end("hello.test", "/", 20, 4)}
        assert ("pyhost-cluster-w1", release) in served and ("pyhost-cluster-w2", None) in served, served
        assert {body["host"] for _status, body in through_front_end("shop.test", "/echo/", 20, 4)} == {"pyhost-cluster-w2"}
    finally:
        shop, hello = scenario_apps()
        rc, output = run_site([shop, hello])
        assert rc == 0, output[-3000:]
    # The next run put the shop on w1 back into the balancer.
    start_shop_again()


def test_a_killed_worker_costs_at_most_the_requests_in_flight_on_it():
    stop = threading.Event()
    with ThreadPoolExecutor(1) as runner:
        loading = runner.submit(load, [("shop.test", "/echo/")] * 6, stop)
        time.sleep(2)
        subprocess.run(["docker", "kill", "pyhost-cluster-w2"], check=True, capture_output=True, timeout=60)
        time.sleep(10)
        stop.set()
        answers = loading.result()
    try:
        failed = [answer for answer in answers if answer[1] != 200]
        # At most one request per client was in flight on w2 when it died.
        assert len(failed) <= 6, Counter(status for _site, status, _worker, _release in failed)
        # Then the front end stops sending to it at once (a connection that fails within
        # scgi_site_connect_timeout goes to w1 for the same request), and its health check keeps w2 out.
        assert [answer[:3] for answer in answers[-50:]] == [("shop.test", 200, "pyhost-cluster-w1")] * 50
    finally:
        subprocess.run(["docker", "start", "pyhost-cluster-w2"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 120
        while W2.run("systemctl is-system-running").stdout.strip() not in {"running", "degraded"}:
            assert time.monotonic() < deadline, "w2 did not boot again"
            time.sleep(1)
        start_shop_again(W2)


def test_an_id_another_user_holds_and_shared_media_not_mounted_are_refused_before_any_change():
    shop, hello = scenario_apps()
    units = W1.check_output("stat -c %Y /etc/systemd/system/scgi-shop.service /etc/systemd/system/scgi-hello.service")
    held = W1.user("hello").uid  # a system id, picked by the host
    for apps, message in [
        ([{**shop, "uid": held}, hello],
         f"scgi_apps: app 'shop', field 'uid': {held} on pyhost-cluster-w1: hello already has this id; "
         "choose an id no user or group has"),
        ([shop, {**hello, "media": {"shared": True}}],
         "scgi_apps: app 'hello', field 'media.shared': true, but /srv/scgi/hello/media is not a mounted "
         "filesystem on pyhost-cluster-fe1"),
        # A user of the front end, which mounts the shop's media, with the shop's id: it would own the shop's files.
        ([shop, hello],
         "scgi_apps: app 'shop', field 'uid': 2001 on pyhost-cluster-fe1: mallory already has this id"),
    ]:
        if "mallory" in message:
            FE.check_output("useradd --system --no-create-home --uid 2001 mallory")
        try:
            rc, output = run_site(apps)
        finally:
            if "mallory" in message:
                FE.check_output("userdel mallory")
        output = " ".join(output.split())
        assert rc != 0 and message in output, output[-3000:]
        # The first play's failure stops every host.
        assert "PLAY [Run the apps]" not in output
    assert W1.check_output("stat -c %Y /etc/systemd/system/scgi-shop.service /etc/systemd/system/scgi-hello.service") == units


# Last: it changes the cluster. w2 leaves the shop's pool and hello becomes absent.
def test_a_worker_that_leaves_the_pool_and_an_absent_app_leave_nothing_behind_but_the_shared_media():
    shop, hello = scenario_apps()
    uploaded = json.loads(FE.check_output(f"python3 -c {_quote(UPLOAD)}"))[0][1]
    # As a rolling deploy that failed on w1 would have left it: out of the balancer.
    W1.check_output("nft add element inet pyhost_scgi draining { 4001 }")
    rc, output = run_site([{**shop, "workers": ["pyhost-cluster-w1"]}, {"name": hello["name"], "state": "absent"}])
    assert rc == 0, output[-6000:]
    assert "elements" not in W1.check_output("nft list set inet pyhost_scgi draining")

    answers = through_front_end("shop.test", "/echo/", 10, 4)
    assert {(status, body["host"]) for status, body in answers} == {(200, "pyhost-cluster-w1")}
    assert "172.30.77.12" not in FE.check_output("cat /etc/apache2/pyhost-scgi/scgi-site-shop.test/*.conf")
    assert not W2.file("/etc/systemd/system/scgi-shop.service").exists
    assert not W2.user("shop").exists
    assert W2.run("nft list set inet pyhost_scgi remote_ports").stdout.count("4001") == 0
    # The shared media stays, whole: only the rest of the app's home went.
    assert W2.check_output("ls -A /srv/scgi/shop") == "media"
    assert W2.file(f"/srv/scgi/shop/media/{uploaded}").exists
    assert through_front_end("shop.test", f"/media/{uploaded}")[0][0] == 200

    assert not FE.file("/etc/apache2/sites-enabled/scgi-site-hello.test.conf").exists
    status, body = through_front_end("hello.test", "/")[0]
    assert not isinstance(body, dict), (status, body)  # hello's JSON
    for host in (FE, W1):
        assert not host.file("/srv/scgi/hello").exists
    assert not W1.file("/etc/systemd/system/scgi-hello.service").exists
    assert not W1.user("hello").exists
