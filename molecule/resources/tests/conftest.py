"""Helpers shared by the Molecule tests: the scenario's host and apps, a run of site.yml, and HTTP
requests to Apache in the container (nothing is mocked)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
from collections.abc import Sequence
from typing import Any

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOST_NAME = RUNNER.get_hosts("scgi_frontends")[0]
APPS: list[dict[str, Any]] = RUNNER.get_variables(HOST_NAME)["scgi_apps"]
WEB_GROUP = "www-data"
PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
HELLO = f"{PROJECT}/molecule/resources/apps/hello"


def kind(app: dict[str, Any]) -> str:
    """What the app is: the Django demo, the Flask notes app, or hello (plain WSGI)."""
    if app.get("django"):
        return "django"
    return "flask" if app["source"]["path"].endswith("/notes") else "hello"


DJANGO_APPS = [app for app in APPS if kind(app) == "django"]
FLASK_APPS = [app for app in APPS if kind(app) == "flask"]
PLAIN_APPS = [app for app in APPS if kind(app) == "hello"]
# Apps under one host name, at different mounts: one site answers for them all.
SHARED_SITES = [
    [app for app in APPS if app["server_name"] == name]
    for name in sorted({app["server_name"] for app in APPS})
    if sum(app["server_name"] == name for app in APPS) > 1
]


def run_site(cli_args: Sequence[str] = (), **extra_vars: Any) -> tuple[int, str]:
    """Run the collection's site.yml on this scenario's host with extra vars (and more ansible-playbook
    arguments, such as --check); return status and output."""
    return run_playbook("site.yml", cli_args, **extra_vars)


def run_playbook(playbook: str, cli_args: Sequence[str] = (), **extra_vars: Any) -> tuple[int, str]:
    """Run one of the collection's playbooks (site.yml, rollback.yml) as run_site does: by its name
    (pyhost.scgi.site), from the collection the scenario converged with (its ANSIBLE_COLLECTIONS_PATH:
    the checkout, or the installed tarball)."""
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-e", json.dumps(extra_vars),
         *cli_args, f"pyhost.scgi.{playbook.removesuffix('.yml')}"],
        check=False, capture_output=True, text=True, timeout=900,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
    )
    return result.returncode, result.stdout + result.stderr


def ids(apps: list[dict[str, Any]]) -> list[str]:
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


def public_location(app: dict[str, Any], path: str) -> str:
    """The Location a redirect to PATH carries: mod_scgi needs it absolute."""
    return f"http://{app['server_name']}{path}" if app.get("apache_client") == "mod_scgi" else path


def path_of(location: str) -> str:
    return re.sub(r"^https?://[^/]+", "", location)


def probe_path(app: dict[str, Any]) -> str:
    return mount(app) + ("echo/" if app.get("django") else "")


def part_path(app: dict[str, Any]) -> str:
    """The app's part of its site's virtual host (included deeper mounts first)."""
    return (f"/etc/apache2/pyhost-scgi/scgi-site-{app['server_name']}/"
            f"{999 - mount(app).count('/'):03d}-scgi-{app['name']}.conf")


def site_vhost_path(app: dict[str, Any]) -> str:
    return f"/etc/apache2/sites-available/scgi-site-{app['server_name']}.conf"


def sleep_path(app: dict[str, Any], seconds: float) -> str:
    return mount(app) + ("sleep/" if app.get("django") else "sleep") + f"?seconds={seconds}"


def cookies(resp: Response) -> dict[str, str]:
    found = {}
    for header in resp.headers.get_all("Set-Cookie") or []:
        name, _equals, rest = header.partition("=")
        found[name] = rest.split(";", 1)[0]
    return found


def port_of(app: dict[str, Any]) -> int:
    """The TCP port of an app that listens on loopback TCP."""
    return int(app["listen"].rsplit(":", 1)[1])
