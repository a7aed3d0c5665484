"""A mistake in one app or one directive stays contained, and a removed app leaves nothing behind."""

from __future__ import annotations

import os

from test_live import APPS, HOST_NAME, fetch, probe_path, run_site

testinfra_hosts = [HOST_NAME]
PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
HELLO = f"{PROJECT}/molecule/resources/apps/hello"


def all_apps_answer() -> bool:
    return all(fetch(app, probe_path(app)).status == 200 for app in APPS)


def test_an_app_that_cannot_start_fails_its_own_deploy_and_absent_removes_it(host):
    broken = {"name": "broken", "server_name": "broken.test", "source": {"path": HELLO},
              "wsgi": "hello:no_such_callable", "mount": "/"}
    status, output = run_site(scgi_apps=[*APPS, broken])
    assert status != 0
    assert "Unable to start service scgi-broken.service" in output
    assert "failed=1" in output
    assert all_apps_answer()
    journal = host.run("journalctl --no-pager -u scgi-broken.service").stdout
    assert "hello:no_such_callable" in journal

    status, output = run_site(scgi_apps=[*APPS, {"name": "broken", "state": "absent"}])
    assert status == 0, output[-3000:]
    for path in ["/srv/scgi/broken", "/etc/scgi/broken", "/var/lib/pyhost-scgi/broken", "/run/scgi-broken",
                 "/etc/systemd/system/scgi-broken.service", "/etc/systemd/system/scgi-broken.socket",
                 "/etc/apache2/sites-available/scgi-broken.conf", "/etc/apache2/sites-enabled/scgi-broken.conf"]:
        assert not host.file(path).exists, path
    assert not host.user("broken").exists
    assert not host.group("broken").exists
    assert host.run("systemctl list-units --all --no-legend 'scgi-broken*'").stdout.strip() == ""
    assert all_apps_answer()


def test_a_directive_apache_rejects_never_reaches_the_live_server(host):
    vhost = f"/etc/apache2/sites-available/scgi-{APPS[0]['name']}.conf"
    before = host.file(vhost).content_string
    status, output = run_site(scgi_site_extra_directives=["NoSuchDirective on"])
    assert status != 0
    assert "Invalid command 'NoSuchDirective'" in output
    assert host.file(vhost).content_string == before
    host.run_test("apache2ctl configtest")
    assert all_apps_answer()
