"""Live checks of a converged pyhost.scgi host.

Every HTTP request goes from this controller over the Docker bridge to Apache
in the container, and from Apache over SCGI to the app's workers: nothing is
mocked. The apps under test are read from the scenario's own inventory, so
the same checks serve every scenario.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import uuid
from typing import Any

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOST_NAME = RUNNER.get_hosts("scgi_frontends")[0]
testinfra_hosts = [HOST_NAME]
APPS: list[dict[str, Any]] = RUNNER.get_variables(HOST_NAME)["scgi_apps"]
DJANGO_APPS = [app for app in APPS if app.get("django")]
PLAIN_APPS = [app for app in APPS if not app.get("django")]
WEB_GROUP = "www-data"


def _ids(apps: list[dict[str, Any]]) -> list[str]:
    return [app["name"] for app in apps]


def _container_ip() -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", HOST_NAME],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", out), f"no bridge address for {HOST_NAME}: {out!r}"
    return out


IP = _container_ip()


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


def fetch(app: dict[str, Any], path: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None, host: str | None = None) -> Response:
    """One request to Apache, with the app's Host header; redirects are not followed."""
    conn = http.client.HTTPConnection(IP, 80, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": host or app["server_name"], **(headers or {})})
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def mount(app: dict[str, Any]) -> str:
    return app.get("mount", "/")


def static_url(app: dict[str, Any]) -> str:
    return (app.get("static") or {}).get("url", mount(app) + "static/")


def probe_path(app: dict[str, Any]) -> str:
    return mount(app) + ("echo/" if app.get("django") else "")


# --- requests through Apache -------------------------------------------------


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
def test_django_home_page_links_static_under_public_url(app):
    resp = fetch(app, mount(app))
    assert resp.status == 200
    assert "pyhost.scgi demo" in resp.text
    assert f'href="{static_url(app)}demo/style.css"' in resp.text


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
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


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
def test_django_redirect_location_is_public_url(app):
    resp = fetch(app, mount(app) + "go/")
    assert resp.status == 302
    assert resp.headers["Location"] == mount(app) + "echo/"


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
def test_django_non_ascii_path_decoded_once(app):
    resp = fetch(app, mount(app) + "words/caf%C3%A9%20au%20lait/")
    assert resp.status == 200
    assert resp.json() == {"word": "café au lait", "path": mount(app) + "words/café au lait/"}


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
def test_django_form_post_with_csrf(app):
    form = fetch(app, mount(app) + "form/")
    assert form.status == 200
    cookie = re.search(r"csrftoken=([^;]+)", form.headers["Set-Cookie"]).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    headers = {"Cookie": f"csrftoken={cookie}", "Content-Type": "application/x-www-form-urlencoded"}
    refused = fetch(app, mount(app) + "form/", method="POST", body=b"message=hi", headers=headers)
    assert refused.status == 403
    said = fetch(app, mount(app) + "form/", method="POST",
                 body=f"csrfmiddlewaretoken={token}&message=hello+%3Cpyhost%3E".encode(), headers=headers)
    assert said.status == 200
    assert "You said: hello &lt;pyhost&gt;" in said.text


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
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


@pytest.mark.parametrize("app", PLAIN_APPS, ids=_ids(PLAIN_APPS))
def test_plain_wsgi_post_query_and_non_ascii_path(app):
    resp = fetch(app, mount(app) + "caf%C3%A9/x?a=1&b=%C3%A9", method="POST", body="ünï".encode())
    assert resp.status == 200
    data = resp.json()
    assert (data["app"], data["method"], data["user"]) == ("hello", "POST", app["name"])
    assert data["script_name"] == mount(app).rstrip("/")
    assert data["path_info"] == "/café/x"
    assert data["query"] == "a=1&b=%C3%A9"
    assert data["body"] == "ünï"


@pytest.mark.parametrize("app", PLAIN_APPS, ids=_ids(PLAIN_APPS))
def test_plain_wsgi_redirect_location_is_public_url(app):
    resp = fetch(app, mount(app) + "redirect")
    assert resp.status == 302
    assert resp.headers["Location"] == f"http://{app['server_name']}{mount(app)}target"


@pytest.mark.parametrize("app", PLAIN_APPS, ids=_ids(PLAIN_APPS))
def test_plain_wsgi_gets_env_and_secret_env(host, app):
    data = fetch(app, mount(app)).json()
    assert data["greeting"] == (app.get("env") or {}).get("HELLO_GREETING")
    assert data["has_token"] == bool((app.get("secret_env") or {}).get("HELLO_TOKEN"))
    for secret in (app.get("secret_env") or {}).values():
        assert secret not in host.run(f"journalctl --no-pager -u scgi-{app['name']}.service").stdout


SUB_MOUNTED_APPS = [app for app in APPS if mount(app) != "/"]


@pytest.mark.parametrize("app", SUB_MOUNTED_APPS, ids=_ids(SUB_MOUNTED_APPS))
def test_mount_without_trailing_slash_redirects(app):
    resp = fetch(app, mount(app).rstrip("/"))
    assert resp.status == 301
    assert resp.headers["Location"].endswith(mount(app))


@pytest.mark.parametrize("app", APPS, ids=_ids(APPS))
def test_static_file_is_served_by_apache_even_with_the_app_stopped(host, app):
    name = "demo/style.css" if app.get("django") else "hello.txt"
    marker = "pyhost-scgi-demo-static" if app.get("django") else "pyhost-scgi-hello-static"
    units = f"scgi-{app['name']}.socket scgi-{app['name']}.service"
    assert fetch(app, probe_path(app)).status == 200
    host.run_test(f"systemctl stop {units}")
    try:
        assert fetch(app, probe_path(app)).status == 503
        static = fetch(app, static_url(app) + name)
        assert static.status == 200
        assert marker in static.text
    finally:
        host.run_test(f"systemctl start {units}")
    assert fetch(app, probe_path(app)).status == 200


def test_unknown_host_gets_404_from_apache():
    resp = fetch(APPS[0], "/", host="unknown.invalid")
    assert resp.status == 404
    assert resp.headers["Server"] == "Apache"


# --- what runs on the host ---------------------------------------------------

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



@pytest.mark.parametrize("app", APPS, ids=_ids(APPS))
def test_every_worker_process_runs_as_the_app_user(host, app):
    fetch(app, probe_path(app))
    workers = [proc for proc in processes(host) if f"--app {app['wsgi']} " in proc["args"]]
    assert workers, f"no worker process of {app['name']}"
    assert {proc["user"] for proc in workers} == {app["name"]}
    user = host.user(app["name"])
    assert user.shell == "/usr/sbin/nologin"
    assert user.group == app["name"]


@pytest.mark.parametrize("app", APPS, ids=_ids(APPS))
def test_layout_owners_and_modes(host, app):
    name, home = app["name"], f"/srv/scgi/{app['name']}"
    expected = {
        home: (name, name, 0o711),
        f"{home}/code": (name, name, 0o750),
        f"{home}/venv": (name, name, 0o750),
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


@pytest.mark.parametrize("app", DJANGO_APPS, ids=_ids(DJANGO_APPS))
def test_django_secret_key_is_generated_and_private(host, app):
    key_file = host.file(f"/etc/scgi/{app['name']}/django-secret-key.env")
    assert re.fullmatch(r"DJANGO_SECRET_KEY=[A-Za-z0-9_-]{60,}\n", key_file.content_string)
    assert key_file.content_string.split("=", 1)[1].strip() not in host.run(
        f"journalctl --no-pager -u scgi-{app['name']}.service").stdout
