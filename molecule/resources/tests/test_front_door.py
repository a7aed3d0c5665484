"""The production front door and day 2: HTTPS with each certificate source that runs offline, HTTP/2,
mod_md's configuration, the apps' logs, and the status and logs playbooks."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
import warnings
from typing import Any

import pytest

from conftest import (
    APPS,
    HOST_NAME,
    IP,
    connect,
    cookies,
    fetch,
    https,
    ids,
    kind,
    mount,
    origin,
    run_playbook,
    tls_context,
    trusted_pem,
)

testinfra_hosts = [HOST_NAME]

HTTPS_APPS = [app for app in APPS if https(app)]
REDIRECTED_APPS = [app for app in HTTPS_APPS if app["tls"].get("redirect", True)]
# HTTPS sites that serve plain HTTP too (no redirect).
BOTH_WAYS_APPS = [app for app in HTTPS_APPS if not app["tls"].get("redirect", True)]
ACME_APPS = [app for app in APPS if app.get("tls") and app["tls"]["certificate"] == "acme"]


def scheme_page(app: dict[str, Any]) -> str:
    """A page of the app that says how it sees the request's scheme."""
    return mount(app) + {"django": "echo/", "flask": "sleep?seconds=0", "hello": ""}[kind(app)]


def sees_https(app: dict[str, Any], answer: dict[str, Any]) -> bool:
    """What the app answered says it saw HTTPS: Django's request.is_secure(), Flask's request.is_secure,
    or the plain WSGI environ (wsgi.url_scheme and HTTPS=on)."""
    if kind(app) == "hello":
        return answer["url_scheme"] == "https" and answer["https"] == "on"
    return answer["secure"] is True and answer["absolute"].startswith(f"https://{app['server_name']}/")


@pytest.mark.parametrize("app", REDIRECTED_APPS, ids=ids(REDIRECTED_APPS))
def test_plain_http_redirects_to_https_but_acme_challenges(app):
    resp = fetch(app, mount(app) + "x?y=1", plain=True)
    assert resp.status == 301
    assert resp.headers["Location"] == f"https://{app['server_name']}{mount(app)}x?y=1"
    challenge = fetch(app, "/.well-known/acme-challenge/token", plain=True)
    assert challenge.status != 301


@pytest.mark.parametrize("app", HTTPS_APPS, ids=ids(HTTPS_APPS))
def test_the_app_sees_https_through_its_protocol_and_hsts_is_sent_only_when_asked(app):
    """scgi, fcgi, ajp and mod_scgi alike: wsgi.url_scheme https, so secure cookies, CSRF over HTTPS and
    absolute URLs are right."""
    resp = fetch(app, scheme_page(app))
    assert resp.status == 200
    assert sees_https(app, resp.json()), resp.json()
    hsts = app["tls"].get("hsts", 0)
    expected = f"max-age={hsts}" if hsts else None
    assert resp.headers.get("Strict-Transport-Security") == expected


if BOTH_WAYS_APPS:

    @pytest.mark.parametrize("app", BOTH_WAYS_APPS, ids=ids(BOTH_WAYS_APPS))
    def test_a_site_without_the_redirect_serves_plain_http_as_plain_http(app):
        resp = fetch(app, scheme_page(app), plain=True)
        assert resp.status == 200
        assert not sees_https(app, resp.json())


@pytest.mark.parametrize("app", [app for app in HTTPS_APPS if kind(app) == "django"],
                         ids=ids([app for app in HTTPS_APPS if kind(app) == "django"]))
def test_django_over_https_sets_secure_cookies_and_accepts_its_csrf_token(app):
    """Secure cookies where the site is HTTPS only (a site that also serves plain HTTP needs its cookies there)."""
    page = fetch(app, mount(app) + "form/")
    token = cookies(page)["csrftoken"]
    assert ("; secure" in page.headers["Set-Cookie"].lower()) == app["tls"].get("redirect", True)
    said = fetch(app, mount(app) + "form/", method="POST", body=f"csrfmiddlewaretoken={token}&message=hi".encode(),
                 headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={token}",
                          "Origin": origin(app), "Referer": origin(app) + mount(app) + "form/"})
    assert said.status == 200
    assert "hi" in said.text


def test_a_name_no_certificate_covers_gets_404_over_https_too():
    """Debian's snakeoil certificate, and no app: like an unknown host name over plain HTTP."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection((IP, 443), timeout=30), server_hostname="unknown.invalid") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: unknown.invalid\r\nConnection: close\r\n\r\n")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]


@pytest.mark.parametrize("app", HTTPS_APPS, ids=ids(HTTPS_APPS))
def test_http2_end_to_end_with_curl(app):
    """curl on this machine, through the container's Apache, ALPN h2, the site's own certificate checked."""
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--http2", "--cacert", "/dev/stdin", "--resolve", f"{app['server_name']}:443:{IP}",
         "--write-out", "\n%{http_version} %{response_code}", f"https://{app['server_name']}{scheme_page(app)}"],
        input=trusted_pem(app), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    print(result.stdout.splitlines()[-1])
    assert result.stdout.splitlines()[-1] == "2 200", result.stdout[-500:]


# Each site whose apps all sit under sub-paths: its / is Apache's empty DocumentRoot.
SUB_PATH_SITES = [app for app in APPS if mount(app) != "/"
                  and not any(mount(other) == "/" for other in APPS if other["server_name"] == app["server_name"])]
PLAIN_APPS = [app for app in APPS if not https(app)] + BOTH_WAYS_APPS


@pytest.mark.parametrize("app", SUB_PATH_SITES, ids=ids(SUB_PATH_SITES))
def test_a_site_lists_no_directory_at_its_root(app):
    resp = fetch(app, "/")
    assert resp.status in (403, 404), resp.body[:300]
    assert b"Index of" not in resp.body


@pytest.mark.parametrize("app", PLAIN_APPS, ids=ids(PLAIN_APPS))
def test_plain_http_stays_http_1_1_no_h2c_upgrade_nor_prior_knowledge(app):
    """An h2c upgrade slips requests past proxies that only see HTTP/1.1: plain HTTP never speaks HTTP/2."""
    upgrade = (f"GET {scheme_page(app)} HTTP/1.1\r\nHost: {app['server_name']}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").encode()
    with connect(app, plain=True) as sock:
        sock.sendall(upgrade)
        status = sock.makefile("rb").readline()
    assert status.startswith(b"HTTP/1.1 200 "), status
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # and an empty SETTINGS
    with connect(app, plain=True) as sock:
        sock.sendall(preface)
        answer = sock.recv(100)
    # HTTP/2 would answer with its own SETTINGS frame; HTTP/1.1 refuses the request line, or closes.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer


def handshake(app: dict[str, Any], versions: tuple[ssl.TLSVersion, ssl.TLSVersion], ciphers: str) -> str:
    """A TLS handshake with Apache for the app's site, limited to these versions (lowest, highest) and TLS 1.2
    ciphers; the version agreed."""
    context = tls_context(app)
    context.minimum_version, context.maximum_version = versions
    context.set_ciphers(ciphers)
    with context.wrap_socket(socket.create_connection((IP, 443), timeout=30), server_hostname=app["server_name"]) as sock:
        return sock.version()


@pytest.mark.parametrize("app", HTTPS_APPS[:1], ids=ids(HTTPS_APPS[:1]))
def test_tls_is_mozilla_intermediate_and_the_key_is_roots_alone(host, app):
    """TLS 1.2 and 1.3 only; for TLS 1.2, forward-secret AEAD ciphers only."""
    tls = ssl.TLSVersion
    with warnings.catch_warnings():  # Python says these versions are deprecated: the point of the test
        warnings.simplefilter("ignore", DeprecationWarning)
        for old in (tls.TLSv1, tls.TLSv1_1):
            with pytest.raises(ssl.SSLError):
                handshake(app, (old, old), "ALL:@SECLEVEL=0")
    # RSA key exchange (no forward secrecy) and CBC: refused.
    with pytest.raises(ssl.SSLError):
        handshake(app, (tls.TLSv1_2, tls.TLSv1_2), "AES128-SHA:AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA")
    assert handshake(app, (tls.TLSv1_2, tls.TLSv1_2), "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256") == "TLSv1.2"
    assert handshake(app, (tls.TLSv1_3, tls.TLSv1_3), "DEFAULT") == "TLSv1.3"
    pem = host.file(f"/etc/apache2/pyhost-scgi-tls/scgi-site-{app['server_name']}.pem")
    assert (pem.user, pem.group, pem.mode) == ("root", "root", 0o600)
    assert host.file("/etc/apache2/pyhost-scgi-tls").mode == 0o700


# Only in the scenarios that have such sites: a test with nothing to check would be skipped.
if ACME_APPS:

    @pytest.mark.parametrize("app", ACME_APPS, ids=ids(ACME_APPS))
    def test_mod_md_manages_the_acme_sites_and_their_configuration_passes_apaches_test(host, app):
        """No ACME CA answers here (apache_acme_ca points at a closed port): mod_md takes the domain, Apache's
        configuration test passes, and until a certificate comes the site answers HTTPS with mod_md's own
        temporary one."""
        vhost = host.file(f"/etc/apache2/sites-available/scgi-site-{app['server_name']}.conf").content_string
        assert f"MDomain {app['server_name']}" in vhost
        assert host.run("apache2ctl configtest").rc == 0
        conf = host.file("/etc/apache2/conf-enabled/pyhost-scgi-tls.conf").content_string
        assert "MDCertificateAgreement accepted" in conf and "MDCertificateAuthority https://127.0.0.1:14000/dir" in conf
        assert host.file("/etc/apache2/mods-enabled/md.load").exists
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(socket.create_connection((IP, 443), timeout=30),
                                 server_hostname=app["server_name"]) as sock:
            assert b"Apache Managed Domain Fallback" in sock.getpeercert(binary_form=True)
            sock.sendall(f"GET {mount(app)} HTTP/1.1\r\nHost: {app['server_name']}\r\nConnection: close\r\n\r\n".encode())
            assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 503 ")


def test_each_app_has_its_access_log_with_durations_and_logrotate_rotates_it(host):
    for app in APPS:
        marker = f"/?log-marker={app['name']}-{time.time_ns()}"
        fetch(app, mount(app).rstrip("/") + marker)
        log = host.file(f"/var/log/apache2/scgi-{app['name']}-access.log").content_string
        line = next(line for line in log.splitlines() if marker in line)
        # The combined format, then the duration in microseconds.
        assert re.fullmatch(r'\S+ \S+ \S+ \[[^]]+\] "GET [^"]+" \d{3} \d+ "[^"]*" "[^"]*" \d+', line), line
        for other in APPS:
            if other["name"] != app["name"]:
                other_log = host.file(f"/var/log/apache2/scgi-{other['name']}-access.log")
                assert not other_log.exists or marker not in other_log.content_string, other["name"]
    rotation = host.run("logrotate --debug /etc/logrotate.d/apache2")
    for app in APPS:
        assert f"/var/log/apache2/scgi-{app['name']}-access.log" in rotation.stdout + rotation.stderr
    assert host.service("logrotate.timer").is_enabled


def test_status_and_logs_show_a_stopped_app_and_its_errors_from_both_sides(host):
    """status.yml after converge: every app serving, on its live release; after the app and its socket
    stop: stopped, and logs.yml shows Apache's error for it (tagged with the app) and its 503s."""
    app = next(app for app in APPS if app.get("apache_client", "proxy") == "proxy" and not app.get("tls"))
    status, output = run_playbook("status.yml")
    assert status == 0, output[-3000:]
    assert "changed=0" in output
    table = status_rows(output)
    for each in APPS:
        release = host.file(f"/srv/scgi/{each['name']}/current").linked_to.rsplit("/", 1)[1]
        if "git" in each["source"]:
            commit = host.file(f"/srv/scgi/{each['name']}/releases/{release}/commit").content_string.strip()
            release = f"git {commit[:12]}"
        assert table[each["name"]][:2] == ["serving", release], table
    try:
        host.run_expect([0], f"systemctl stop scgi-{app['name']}.socket scgi-{app['name']}.service")
        assert fetch(app, mount(app)).status == 503
        status, output = run_playbook("status.yml", app=app["name"])
        assert status == 0, output[-3000:]
        assert status_rows(output)[app["name"]][0] == "stopped"
        status, output = run_playbook("logs.yml", app=app["name"], lines=5)
        assert status == 0, output[-3000:]
        assert f"[app {app['name']}]" in output
        assert re.search(r'" 503 \d+ ', output), output[-3000:]
    finally:
        host.run_expect([0], f"systemctl start scgi-{app['name']}.socket scgi-{app['name']}.service")
    assert fetch(app, mount(app)).status in (200, 302)


def status_rows(output: str) -> dict[str, list[str]]:
    """The status table's rows by app: the columns after the name, split on runs of two spaces."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r" {2,}", line.strip().strip('",'))
        if cells and cells[0] in {app["name"] for app in APPS} and len(cells) > 2:
            rows[cells[0]] = cells[1:]
    return rows
