"""Live checks of a converged pyhost.scgi host.

Every HTTP request goes from this controller over the Docker bridge to Apache
in the container, and from Apache over SCGI to the app's workers: nothing is
mocked. The apps under test are read from the scenario's own inventory, so
the same checks serve every scenario.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
from conftest import (
    APPS,
    DJANGO_APPS,
    FLASK_APPS,
    HOST_NAME,
    PLAIN_APPS,
    SHARED_SITES,
    WEB_GROUP,
    connect,
    cookies,
    fetch,
    ids,
    kind,
    mount,
    origin,
    path_of,
    port_of,
    probe_path,
    public_location,
    scheme,
    sleep_path,
    static_url,
)

testinfra_hosts = [HOST_NAME]

# --- requests through Apache -------------------------------------------------


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_home_page_links_static_under_public_url(app):
    resp = fetch(app, mount(app))
    assert resp.status == 200
    assert "pyhost.scgi demo" in resp.text
    assert f'href="{static_url(app)}demo/style.css"' in resp.text


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_post_with_query_and_body(app):
    resp = fetch(app, probe_path(app) + "?a=1&b=%C3%A9", method="POST", body="ünïcode body".encode(),
                 headers={"Content-Type": "text/plain; charset=utf-8"})
    assert resp.status == 200
    data = resp.json()
    assert data["method"] == "POST"
    assert data["query"] == {"a": "1", "b": "é"}
    assert data["body"] == "ünïcode body"
    assert data["path"] == mount(app) + "echo/"
    assert data["path_info"] == "/echo/"
    assert data["script_name"] == mount(app).rstrip("/")
    assert data["user"] == app["name"]


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_redirect_location_is_public_url(app):
    resp = fetch(app, mount(app) + "go/")
    assert resp.status == 302
    assert resp.headers["Location"] == public_location(app, mount(app) + "echo/")


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_non_ascii_path_decoded_once(app):
    resp = fetch(app, mount(app) + "words/caf%C3%A9%20au%20lait/")
    assert resp.status == 200
    assert resp.json() == {"word": "café au lait", "path": mount(app) + "words/café au lait/"}


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_form_post_with_csrf(app):
    form = fetch(app, mount(app) + "form/")
    assert form.status == 200
    cookie = re.search(r"csrftoken=([^;]+)", form.headers["Set-Cookie"]).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    headers = {"Cookie": f"csrftoken={cookie}", "Content-Type": "application/x-www-form-urlencoded",
               "Origin": origin(app)}
    refused = fetch(app, mount(app) + "form/", method="POST", body=b"message=hi", headers=headers)
    assert refused.status == 403
    said = fetch(app, mount(app) + "form/", method="POST",
                 body=f"csrfmiddlewaretoken={token}&message=hello+%3Cpyhost%3E".encode(), headers=headers)
    assert said.status == 200
    assert "You said: hello &lt;pyhost&gt;" in said.text


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_upload_lands_in_media_and_apache_serves_it(host, app):
    content = f"upload {uuid.uuid4()}\n".encode()
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"note.txt\"\r\n"
        f"Content-Type: text/plain\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    resp = fetch(app, mount(app) + "upload/", method="POST", body=body,
                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status == 200
    saved = resp.json()
    assert saved["url"].startswith(mount(app) + "media/uploads/")
    served = fetch(app, saved["url"])
    assert served.status == 200
    assert served.body == content
    assert served.headers["Content-Security-Policy"] == "sandbox"
    on_disk = host.file(f"/srv/scgi/{app['name']}/media/{saved['name']}")
    assert (on_disk.user, on_disk.group, on_disk.mode) == (app["name"], WEB_GROUP, 0o640)


@pytest.mark.parametrize("app", PLAIN_APPS, ids=ids(PLAIN_APPS))
def test_plain_wsgi_post_query_and_non_ascii_path(app):
    resp = fetch(app, mount(app) + "caf%C3%A9/x?a=1&b=%C3%A9", method="POST", body="ünï".encode())
    assert resp.status == 200
    data = resp.json()
    assert (data["app"], data["method"], data["user"]) == ("hello", "POST", app["name"])
    assert data["script_name"] == mount(app).rstrip("/")
    assert data["path_info"] == "/café/x"
    assert data["query"] == "a=1&b=%C3%A9"
    assert data["body"] == "ünï"


@pytest.mark.parametrize("app", PLAIN_APPS, ids=ids(PLAIN_APPS))
def test_plain_wsgi_redirect_location_is_public_url(app):
    resp = fetch(app, mount(app) + "redirect")
    assert resp.status == 302
    assert resp.headers["Location"] == f"{scheme(app)}://{app['server_name']}{mount(app)}target"


@pytest.mark.parametrize("app", PLAIN_APPS, ids=ids(PLAIN_APPS))
def test_plain_wsgi_gets_env_and_secret_env(host, app):
    data = fetch(app, mount(app)).json()
    assert data["greeting"] == (app.get("env") or {}).get("HELLO_GREETING")
    assert data["has_token"] == bool((app.get("secret_env") or {}).get("HELLO_TOKEN"))
    for secret in (app.get("secret_env") or {}).values():
        assert secret not in host.run(f"journalctl --no-pager -u scgi-{app['name']}.service").stdout


@pytest.mark.parametrize("app", FLASK_APPS, ids=ids(FLASK_APPS))
def test_flask_pages_session_and_redirect_stay_under_the_mount(app):
    home = fetch(app, mount(app))
    assert home.status == 200
    assert f'href="{static_url(app)}notes.css"' in home.text
    assert f'action="{mount(app)}notes"' in home.text
    saved = fetch(app, mount(app) + "notes", method="POST", body=b"text=hello+from+molecule",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert saved.status == 302
    assert saved.headers["Location"] == public_location(app, mount(app))
    # The session is signed with the key from secret_env: any worker process reads it.
    page = fetch(app, path_of(saved.headers["Location"]), headers={"Cookie": f"session={cookies(saved)['session']}"})
    assert page.status == 200
    assert "<li>hello from molecule</li>" in page.text
    assert "Saved 19 characters." in page.text


def who_answers(app: dict[str, Any]) -> str:
    """Which app served a request for the app's probe path, by what it answers."""
    resp = fetch(app, probe_path(app))
    assert resp.status == 200, (app["name"], resp.status)
    if "<h1>Notes</h1>" in resp.text:
        return "notes"
    return resp.json()["user"]


@pytest.mark.parametrize("apps", SHARED_SITES, ids=[apps[0]["server_name"] for apps in SHARED_SITES])
def test_apps_under_one_host_name_each_answer_at_their_own_mount(apps):
    assert len({mount(app) for app in apps}) == len(apps)
    # Whichever app is at / (proxy or mod_scgi), each mount reaches its own app; the static
    # files of each mount are checked for every app below.
    for app in apps:
        assert who_answers(app) == app["name"]


BODY_ECHOING_APPS = DJANGO_APPS + PLAIN_APPS


@pytest.mark.parametrize("app", BODY_ECHOING_APPS, ids=ids(BODY_ECHOING_APPS))
def test_a_1_mib_post_reaches_the_app(app):
    body = b"x" * (1 << 20)
    resp = fetch(app, probe_path(app), method="POST", body=body, headers={"Content-Type": "text/plain"})
    assert resp.status == 200
    data = resp.json()
    assert (data["user"], len(data["body"])) == (app["name"], len(body))


LIMITED_BODY_APPS = [app for app in APPS if app.get("max_body")]


@pytest.mark.parametrize("app", LIMITED_BODY_APPS, ids=ids(LIMITED_BODY_APPS))
def test_a_body_over_max_body_gets_413_from_apache(app):
    limit = int(app["max_body"][:-1]) * {"K": 1 << 10, "M": 1 << 20}[app["max_body"][-1]]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert fetch(app, mount(app) + "notes", method="POST", body=b"x" * (limit + 1), headers=headers).status == 413
    assert fetch(app, mount(app) + "notes", method="POST", body=b"text=" + b"x" * 100, headers=headers).status == 302


SLOW_CLIENT_APPS = [app for app in APPS if app.get("read_timeout")]


@pytest.mark.parametrize("app", SLOW_CLIENT_APPS, ids=ids(SLOW_CLIENT_APPS))
def test_slow_clients_through_apache_do_not_hold_the_apps_workers(app):
    """As many clients as the app has workers announce a 1 MB body and send one byte: Apache hands
    each to a worker, which drops it after read_timeout, not after Apache's own 20 s."""
    stalled = []
    try:
        for _worker in range(_children(app)):
            sock = connect(app)
            sock.sendall(f"POST {probe_path(app)} HTTP/1.1\r\nHost: {app['server_name']}\r\n"
                         "Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\nx".encode())
            stalled.append(sock)
        time.sleep(1)
        started = time.monotonic()
        assert fetch(app, probe_path(app)).status == 200
        assert time.monotonic() - started < app["read_timeout"] + 5
    finally:
        for sock in stalled:
            sock.close()


SUB_MOUNTED_APPS = [app for app in APPS if mount(app) != "/"]


@pytest.mark.parametrize("app", SUB_MOUNTED_APPS, ids=ids(SUB_MOUNTED_APPS))
def test_mount_without_trailing_slash_redirects(app):
    resp = fetch(app, mount(app).rstrip("/"))
    assert resp.status == 301
    assert resp.headers["Location"].endswith(mount(app))


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_static_file_is_served_by_apache_even_with_the_app_stopped(host, app):
    name, marker = {
        "django": ("demo/style.css", "pyhost-scgi-demo-static"),
        "flask": ("notes.css", "pyhost-scgi-notes-static"),
        "hello": ("hello.txt", "pyhost-scgi-hello-static"),
    }[kind(app)]
    units = f"scgi-{app['name']}.socket scgi-{app['name']}.service"
    assert fetch(app, probe_path(app)).status == 200
    host.run_test(f"systemctl stop {units}")
    try:
        # mod_proxy says 503 Service Unavailable; mod_scgi says 500.
        assert fetch(app, probe_path(app)).status == (500 if app.get("apache_client") == "mod_scgi" else 503)
        static = fetch(app, static_url(app) + name)
        assert static.status == 200
        assert marker in static.text
    finally:
        host.run_test(f"systemctl start {units}")
    assert fetch(app, probe_path(app)).status == 200


def test_unknown_host_gets_404_from_apache():
    resp = fetch(APPS[0], "/", host="unknown.invalid", plain=True)
    assert resp.status == 404
    assert resp.headers["Server"] == "Apache"


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_apache_hardening_is_visible_on_every_response(app):
    for resp in (fetch(app, probe_path(app)), fetch(app, static_url(app) + "no-such-file")):
        assert resp.headers["Server"] == "Apache"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "Apache/" not in resp.text
    assert fetch(app, probe_path(app), method="TRACE").status == 405
    listing = fetch(app, static_url(app))
    assert listing.status in (403, 404)
    assert "Index of" not in listing.text


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_admin_login_flow_stays_on_public_urls(host, app):
    create_admin = (
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='molecule').exists() or "
        "User.objects.create_superuser('molecule', 'molecule@example.org', 'molecule-pw')"
    )
    host.run_test(f'scgi-run {app["name"]} python -m django shell -c "{create_admin}"')
    admin = mount(app) + "admin/"
    first = fetch(app, admin)
    assert first.status == 302
    assert first.headers["Location"] == public_location(app, f"{admin}login/?next={quote(admin, safe='/')}")
    login_url = path_of(first.headers["Location"])
    login = fetch(app, login_url)
    assert login.status == 200
    assert f'href="{static_url(app)}admin/css/base.css"' in login.text
    assert fetch(app, f"{static_url(app)}admin/css/base.css").status == 200
    assert f'action="{login_url}"' in login.text.replace("&amp;", "&")
    csrf = cookies(login)["csrftoken"]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    signed_in = fetch(app, login_url, method="POST",
                      body=f"csrfmiddlewaretoken={token}&username=molecule&password=molecule-pw&next={quote(admin)}".encode(),
                      headers={"Cookie": f"csrftoken={csrf}", "Content-Type": "application/x-www-form-urlencoded",
                               "Origin": origin(app)})
    assert signed_in.status == 302
    assert signed_in.headers["Location"] == public_location(app, admin)
    session = cookies(signed_in)["sessionid"]
    dashboard = fetch(app, admin, headers={"Cookie": f"csrftoken={csrf}; sessionid={session}"})
    assert dashboard.status == 200
    assert "Site administration" in dashboard.text


# --- concurrency: the pool really grows, the threads really run at once -------


def _children(app: dict[str, Any]) -> int:
    return int(app["max_children"])


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_max_children_requests_in_flight_at_once(app):
    children = _children(app)
    with ThreadPoolExecutor(max_workers=children) as pool:
        replies = list(pool.map(lambda _: fetch(app, sleep_path(app, 2)), range(children)))
    assert [reply.status for reply in replies] == [200] * children
    served = [reply.json() for reply in replies]
    # Every request was in flight at one same instant: all started before any ended.
    assert max(one["started"] for one in served) < min(one["ended"] for one in served)
    workers = {(one["pid"], one["thread"]) for one in served}
    assert len(workers) == children
    pids = {one["pid"] for one in served}
    assert len(pids) == (children if app.get("method", "prefork") == "prefork" else 1)


RECYCLING_APPS = [app for app in APPS if app.get("max_requests")]


@pytest.mark.parametrize("app", RECYCLING_APPS, ids=ids(RECYCLING_APPS))
def test_prefork_worker_is_replaced_after_max_requests(app):
    limit = app["max_requests"]
    served = [fetch(app, sleep_path(app, 0)).json() for _request in range(limit * _children(app) * 3)]
    assert max(one["served"] for one in served) <= limit
    assert len({one["pid"] for one in served}) > _children(app)


# --- what runs on the host ---------------------------------------------------


BARE_HOST_LACKS = ["sudo", "dbus", "iproute2", "procps"]


def test_the_image_is_as_bare_as_a_minimal_host():
    """What many VPS and container hosts are: debootstrap minbase with systemd and python3."""
    image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", HOST_NAME],
                           check=True, capture_output=True, text=True, timeout=30).stdout.strip()
    # dpkg-query exits 1 for a package it does not know at all: the statuses it prints are what counts.
    listed = subprocess.run(["docker", "run", "--rm", "--entrypoint", "dpkg-query", image, "-W",
                             "-f", "${Package} ${db:Status-Abbrev}\n", *BARE_HOST_LACKS],
                            check=False, capture_output=True, text=True, timeout=60).stdout
    assert [line for line in listed.splitlines() if line.split()[1:2] == ["ii"]] == []


def test_the_roles_brought_what_they_rely_on_and_nothing_else(host):
    """The converge connected as root without sudo; the roles installed and started the system bus
    (apache2 brings procps as a dependency of its own)."""
    assert not host.package("sudo").is_installed
    assert not host.package("iproute2").is_installed
    assert host.package("dbus").is_installed
    assert host.service("dbus").is_running


PROCESSES_PY = """
import json, os, pwd
procs = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
        user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    except (OSError, KeyError):
        continue
    procs.append({"pid": int(pid), "user": user, "args": args})
print(json.dumps(procs))
"""


def processes(host) -> list[dict[str, Any]]:
    """Every process of the host with its user, read from /proc (minimal images have no ps)."""
    return json.loads(host.check_output(f"python3 -c '{PROCESSES_PY}'"))


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_every_worker_process_runs_as_the_app_user(host, app):
    fetch(app, probe_path(app))
    # Started on the links, each runs on the real paths of the live release (the launcher pins them).
    live = host.file(f"/srv/scgi/{app['name']}/current").linked_to
    workers = [proc for proc in processes(host) if f"--chdir {live}/code " in proc["args"]]
    assert workers, f"no worker process of {app['name']}"
    assert {proc["user"] for proc in workers} == {app["name"]}
    user = host.user(app["name"])
    assert user.shell == "/usr/sbin/nologin"
    assert user.group == app["name"]


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_layout_owners_and_modes(host, app):
    name, home = app["name"], f"/srv/scgi/{app['name']}"
    live = host.file(f"{home}/current").linked_to
    assert live.startswith(f"{home}/releases/")
    assert host.file(f"{home}/code").linked_to == f"{live}/code"
    assert host.file(f"{home}/venv").linked_to.startswith(f"{home}/venvs/")
    expected = {
        home: ("root", "root", 0o711),
        f"{home}/releases": ("root", "root", 0o711),
        f"{home}/venvs": ("root", "root", 0o711),
        live: ("root", "root", 0o711),
        f"{live}/code": ("root", name, 0o750),
        host.file(f"{home}/venv").linked_to: (name, name, 0o750),
        f"{home}/state": (name, name, 0o750),
        f"{home}/static": (name, WEB_GROUP, 0o2750),
        f"{home}/media": (name, WEB_GROUP, 0o2750),
        f"/etc/scgi/{name}": ("root", name, 0o750),
        f"/etc/scgi/{name}/app.env": ("root", name, 0o640),
        f"/etc/scgi/{name}/secret.env": ("root", name, 0o640),
    }
    if app.get("django"):
        expected[f"/etc/scgi/{name}/django-secret-key.env"] = ("root", name, 0o640)
    if app.get("listen", "unix") == "unix":
        expected[f"/run/scgi-{name}/{name}.sock"] = (name, WEB_GROUP, 0o660)
    for path, owner in expected.items():
        found = host.file(path)
        assert found.exists, path
        assert (found.user, found.group, found.mode) == owner, path


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_service_is_hardened(host, app):
    out = host.check_output(f"systemd-analyze security --no-pager scgi-{app['name']}.service")
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    assert exposure <= 1.5, out


def test_unit_settings_relax_the_hardening_of_their_app_only(host):
    relaxed = [app["name"] for app in APPS if (app.get("unit_settings") or {}).get("MemoryDenyWriteExecute") is False]
    assert relaxed, "each scenario relaxes one app's MemoryDenyWriteExecute"
    for app in APPS:
        shown = host.check_output(
            f"systemctl show --property=MemoryDenyWriteExecute --value scgi-{app['name']}.service")
        assert shown == ("no" if app["name"] in relaxed else "yes"), app["name"]


def test_an_address_the_operator_allows_reaches_the_service_and_scgi_run(host):
    """unit_settings IPAddressAllow as a list ("localhost 192.0.2.10"): in the unit file a list, for
    systemd-run (scgi-run: venv, pip, migrate) one property per address."""
    allowing = [app for app in APPS if " " in str((app.get("unit_settings") or {}).get("IPAddressAllow", ""))]
    for app in allowing:
        wanted = [entry for entry in app["unit_settings"]["IPAddressAllow"].split() if entry != "localhost"]
        shown = host.check_output(f"systemctl show --property=IPAddressAllow --value scgi-{app['name']}.service")
        assert all(f"{entry}/32" in shown.split() for entry in wanted), shown
        assert "127.0.0.0/8" in shown.split()
        assert host.check_output(f"scgi-run {app['name']} python -c 'print(6 * 7)'") == "42"


LIMITED_APPS = [app for app in APPS if app.get("memory_max") or app.get("cpu_quota") or app.get("tasks_max")]


@pytest.mark.parametrize("app", LIMITED_APPS, ids=ids(LIMITED_APPS))
def test_resource_limits_reach_the_service(host, app):
    shown = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax scgi-{app['name']}.service").splitlines())
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    memory = app["memory_max"]
    assert int(shown["MemoryMax"]) == int(memory[:-1]) * units[memory[-1]]
    assert shown["CPUQuotaPerSecUSec"] == f"{int(app['cpu_quota'][:-1]) * 10}ms"
    assert int(shown["TasksMax"]) == app["tasks_max"]


@pytest.mark.parametrize("app", DJANGO_APPS, ids=ids(DJANGO_APPS))
def test_django_secret_key_is_generated_and_private(host, app):
    key_file = host.file(f"/etc/scgi/{app['name']}/django-secret-key.env")
    assert re.fullmatch(r"DJANGO_SECRET_KEY=[A-Za-z0-9_-]{60,}\n", key_file.content_string)
    assert key_file.content_string.split("=", 1)[1].strip() not in host.run(
        f"journalctl --no-pager -u scgi-{app['name']}.service").stdout


# --- isolation: tried as the users themselves --------------------------------

PAIRS = list(itertools.permutations(APPS[:3], 2))


def can(host, user: str, test: str, path: str) -> bool:
    """Whether USER passes `test TEST PATH` (-r: may read it) on the host."""
    return host.run(f"runuser -u {user} -- test {test} {path}").rc == 0


def private_paths(app: dict[str, Any]) -> list[str]:
    name = app["name"]
    return [
        f"/srv/scgi/{name}/code", f"/srv/scgi/{name}/venv", f"/srv/scgi/{name}/state",
        f"/etc/scgi/{name}/app.env", f"/etc/scgi/{name}/secret.env",
        f"/var/lib/pyhost-scgi/{name}/code.tar",
    ]


@pytest.mark.parametrize(("app", "other"), PAIRS, ids=[f"{a['name']}-reads-{b['name']}" for a, b in PAIRS])
def test_an_app_cannot_read_another_app(host, app, other):
    home = f"/srv/scgi/{other['name']}"
    for path in [home, *private_paths(other), f"{home}/static", f"{home}/media"]:
        assert not can(host, app["name"], "-r", path), path


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_an_app_reads_its_own_files(host, app):
    for path in private_paths(app):
        assert can(host, app["name"], "-r", path), path


@pytest.mark.parametrize("app", APPS, ids=ids(APPS))
def test_apache_reads_static_and_media_only(host, app):
    home = f"/srv/scgi/{app['name']}"
    assert can(host, WEB_GROUP, "-r", f"{home}/static")
    assert can(host, WEB_GROUP, "-r", f"{home}/media")
    for path in [home, *private_paths(app)]:
        assert not can(host, WEB_GROUP, "-r", path), path


@pytest.mark.parametrize("app", APPS[:2], ids=ids(APPS[:2]))
def test_an_app_can_plant_nothing_where_root_deploys(host, app):
    """Root unpacks, swaps links and chowns in the app's home, releases and code; the app can create, replace
    or change nothing there, so no link it plants (state -> /root, code.new -> /etc/cron.d) is ever followed,
    and it cannot choose the release that runs."""
    name, home = app["name"], f"/srv/scgi/{app['name']}"
    code_file = host.check_output(f"find {home}/code/ -maxdepth 1 -type f -name '*.py' -print -quit")
    live = host.file(f"{home}/current").linked_to
    venv = host.file(f"{home}/venv").linked_to
    attempts = [
        f"ln -s /etc/cron.d {home}/code.new",
        f"ln -s /root {home}/static.new",
        f"mv {home}/state {home}/state.moved",
        f"mv {home}/venv {home}/venv.moved",
        f"ln -sfn /tmp {home}/current",
        f"ln -s /etc/cron.d {home}/releases/0123456789abcdef",
        f"ln -sfn /tmp {live}/venv",
        f"touch {home}/releases/history",
        f"mv {venv} {venv}.moved",
        f"ln -s /root {venv}.ready",
        f"touch {home}/code/planted.py",
        f"rm -f {code_file}",
        f"chmod o+r {code_file}",
    ]
    for attempt in attempts:
        assert host.run(f"runuser -u {name} -- {attempt}").rc != 0, attempt
    assert host.file(code_file).exists
    assert (host.file(code_file).user, host.file(code_file).group) == ("root", name)


@pytest.mark.parametrize("app", APPS[:2], ids=ids(APPS[:2]))
def test_deploy_time_commands_run_in_the_apps_sandbox(host, app):
    """scgi-run (migrate, collectstatic, pip, an operator's shell) confines the app's code as its service does."""
    name, home = app["name"], f"/srv/scgi/{app['name']}"
    probe = f"/tmp/pyhost-sandbox-{name}"
    script = (f"id -un; echo probe > {probe}; touch {home}/venv/planted && echo venv-writable; "
              f"test -e /proc/1 && echo sees-pid-1; touch {home}/state/probe && rm {home}/state/probe && echo state-ok")
    out = host.run(f"scgi-run {name} /bin/sh -c '{script}'").stdout.split()
    assert out == [name, "state-ok"], out
    assert not host.file(probe).exists  # its /tmp is its own
    assert host.run(f"scgi-run --writable {home}/venv {name} /bin/sh -c 'touch {home}/venv/ok && rm {home}/venv/ok'").rc == 0


def test_nothing_of_an_app_is_world_readable(host):
    roots = " ".join(f"/srv/scgi/{a['name']} /etc/scgi/{a['name']} /var/lib/pyhost-scgi/{a['name']}" for a in APPS)
    assert host.check_output(f"find {roots} -perm -o=r ! -type l -print") == ""


# --- TCP ports: Apache's, nobody else's ----------------------------------------

TCP_APPS = [app for app in APPS if app.get("listen", "unix") != "unix"]


def connects(host, user: str, port: int) -> bool:
    """Whether a connection that USER opens to 127.0.0.1:PORT is accepted."""
    script = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"
    return host.run(f'runuser -u {user} -- python3 -c "{script}"').rc == 0


@pytest.mark.parametrize("app", TCP_APPS, ids=ids(TCP_APPS))
def test_only_apache_and_root_may_connect_to_a_tcp_app(host, app):
    """Another app, or any other local user, cannot hand the app made-up SCGI/FastCGI/AJP headers
    (REMOTE_USER, HTTPS): its connection is refused before the app sees a byte."""
    other = next(a for a in APPS if a["name"] != app["name"])
    for stranger in [other["name"], app["name"], "nobody"]:
        assert not connects(host, stranger, port_of(app)), stranger
    assert connects(host, "www-data", port_of(app))
    assert connects(host, "root", port_of(app))


def test_the_firewall_keeps_the_operators_tables_and_the_apps_ports_fail_closed(host):
    """Debian's nftables.service starts with `flush ruleset` and stops with it: the apps' ports stay closed to
    strangers, and open to Apache, through its start, restart, reload and stop (its drop-in), and the collection's
    table never removes the operator's own. Stopping the collection's unit deletes nothing."""
    app = TCP_APPS[0]
    other = next(a for a in APPS if a["name"] != app["name"])
    units = " ".join(f"scgi-{tcp['name']}.socket scgi-{tcp['name']}.service" for tcp in TCP_APPS)
    try:
        # The command nftables.service reloads with loads the operator's ruleset and the collection's table in one
        # transaction: run alone, without the collection's unit, it leaves the table there.
        reload = re.search(r"argv\[\]=([^;]*) ;", host.check_output("systemctl show -P ExecReload nftables.service"))
        host.run_test(reload.group(1))
        assert host.run("nft list table inet pyhost_scgi").rc == 0, reload.group(1)
        for action in ["start", "restart", "reload", "stop"]:
            host.run_test(f"systemctl {action} nftables.service")
            # The operator's table, from /etc/nftables.conf, while nftables.service is up.
            assert (host.run("nft list table inet filter").rc == 0) == (action != "stop"), action
            assert host.run("nft list table inet pyhost_scgi").rc == 0, action
            assert not connects(host, other["name"], port_of(app)), action
            assert not connects(host, "nobody", port_of(app)), action
            assert connects(host, "www-data", port_of(app)), action
        host.run_test("systemctl stop pyhost-scgi-firewall.service")
        assert host.run("nft list table inet pyhost_scgi").rc == 0
        assert not connects(host, "nobody", port_of(app))
    finally:
        # What the next run does: the collection's tables, then the apps' sockets and services.
        host.run_test(f"systemctl start pyhost-scgi-firewall.service {units}")
    assert not connects(host, other["name"], port_of(app))
    assert connects(host, "www-data", port_of(app))
