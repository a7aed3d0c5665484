"""Helpers shared by the Molecule tests: the scenario's host and apps, a run of site.yml, and HTTP
requests to Apache in the container (nothing is mocked)."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
from collections.abc import Sequence
from typing import Any

import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOST_NAME = RUNNER.get_hosts("scgi_frontends")[0]
APPS: list[dict[str, Any]] = RUNNER.get_variables(HOST_NAME)["scgi_apps"]
WEB_GROUP = "www-data"
PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
# The scenario's test CA, which signed the operator certificates (prepare.yml).
TEST_CA = f"{os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '')}/tls/ca.crt"
HELLO = f"{PROJECT}/molecule/resources/apps/hello"


def kind(app: dict[str, Any]) -> str:
    """What the app is: the Django demo, the Flask notes app, or hello (plain WSGI)."""
    if app.get("django"):
        return "django"
    source = app["source"].get("path") or app["source"]["git"]["repo"]
    return "flask" if source.endswith("/notes") else "hello"


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


def https(app: dict[str, Any]) -> bool:
    """Whether the tests reach the app over HTTPS: its site has a certificate here (mod_md's ACME sites have
    none, with no ACME CA to answer: they are reached over HTTP)."""
    return bool(app.get("tls")) and app["tls"]["certificate"] != "acme"


def scheme(app: dict[str, Any]) -> str:
    return "https" if https(app) else "http"


_TRUSTED: dict[str, str] = {}


def trusted_pem(app: dict[str, Any]) -> str:
    """The one certificate the tests trust for the app's site: the test CA's, or the self-signed one the host
    made (read from the host)."""
    site = app["server_name"]
    if site not in _TRUSTED:
        if app["tls"]["certificate"] == "files":
            with open(TEST_CA, encoding="ascii") as ca:
                _TRUSTED[site] = ca.read()
        else:
            _TRUSTED[site] = subprocess.run(["docker", "exec", HOST_NAME, "openssl", "x509", "-in",
                                             f"/etc/apache2/pyhost-scgi-tls/scgi-site-{site}.pem"],
                                            check=True, capture_output=True, text=True, timeout=30).stdout
    return _TRUSTED[site]


def tls_context(app: dict[str, Any]) -> ssl.SSLContext:
    """A client context that trusts trusted_pem(app) alone, and checks that the certificate names the host."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=trusted_pem(app))
    return context


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the container's address, with SNI and certificate check for the host name asked for."""

    def __init__(self, server_hostname: str, context: ssl.SSLContext) -> None:
        super().__init__(IP, 443, timeout=30, context=context)
        self._server_hostname = server_hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname)


def connect(app: dict[str, Any], plain: bool = False) -> socket.socket:
    """A raw connection to Apache for the app: TLS-wrapped where the tests reach it over HTTPS."""
    sock = socket.create_connection((IP, 443 if https(app) and not plain else 80), timeout=30)
    if https(app) and not plain:
        return tls_context(app).wrap_socket(sock, server_hostname=app["server_name"])
    return sock


def fetch(app: dict[str, Any], path: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None, host: str | None = None, plain: bool = False) -> Response:
    """One request to Apache, with the app's Host header, over HTTPS for an app served so (plain: over
    HTTP all the same); redirects are not followed."""
    if https(app) and not plain:
        conn: http.client.HTTPConnection = _HTTPSConnection(host or app["server_name"], tls_context(app))
    else:
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
    return f"{scheme(app)}://{app['server_name']}{path}" if app.get("apache_client") == "mod_scgi" else path


def origin(app: dict[str, Any]) -> str:
    """The Origin header a browser sends with a form of the app (Django checks it over HTTPS)."""
    return f"{scheme(app)}://{app['server_name']}"


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
