"""Many hosts: one front end balancing a Django app over two workers and a WSGI app on one of them,
a PostgreSQL host, and an outsider that must get nothing from any app port."""

from __future__ import annotations

import json
import textwrap

import pytest
import testinfra

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


def test_the_shop_is_served_by_both_workers_and_hello_by_its_one():
    answers = through_front_end("shop.test", "/echo/", 20, 4)
    assert {status for status, _ in answers} == {200}
    assert {body["host"] for _, body in answers} == set(WORKERS)
    assert {body["user"] for _, body in answers} == {"shop"}
    answers = through_front_end("hello.test", "/", 10, 4)
    assert {(status, body["host"]) for status, body in answers} == {(200, "pyhost-cluster-w1")}
    assert not W2.file("/etc/systemd/system/scgi-hello.service").exists
    assert not W2.user("hello").exists


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


def test_a_stopped_worker_costs_no_request():
    W1.check_output("systemctl stop scgi-shop.socket scgi-shop.service")
    try:
        answers = through_front_end("shop.test", "/ping/", 500, 8)
        assert [status for status, _ in answers].count(200) == 500, answers[:5]
    finally:
        W1.check_output("systemctl start scgi-shop.socket scgi-shop.service")


def test_static_files_are_served_by_the_front_end_with_every_worker_stopped():
    css = "/srv/scgi/shop/static/admin/css/base.css"
    assert FE.file(css).sha256sum == W1.file(css).sha256sum
    for worker in WORKERS.values():
        worker.check_output("systemctl stop scgi-shop.socket scgi-shop.service")
    try:
        assert through_front_end("shop.test", "/static/admin/css/base.css")[0][0] == 200
    finally:
        for worker in WORKERS.values():
            worker.check_output("systemctl start scgi-shop.socket scgi-shop.service")


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
    assert {body["host"] for _, body in answers} == set(WORKERS)
    assert all(body["authenticated"] for _, body in answers)
    # Both workers hold the same key; only one of them migrated.
    keys = {worker.file("/etc/scgi/shop/django-secret-key.env").sha256sum for worker in WORKERS.values()}
    assert len(keys) == 1
