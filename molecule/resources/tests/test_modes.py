"""Check mode and diff on a converged host, and an app removed with keep_data and brought back."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

from test_live import APPS, HOST_NAME, PLAIN_APPS, fetch, run_site

testinfra_hosts = [HOST_NAME]
PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
HELLO = f"{PROJECT}/molecule/resources/apps/hello"
CHECK_DIFF = ["--check", "--diff"]


def changed_tasks(output: str) -> set[str]:
    """Names of the tasks and handlers that reported a change."""
    changed = set()
    for block in re.split(r"^(?=TASK \[|RUNNING HANDLER \[)", output, flags=re.M):
        header = re.match(r"(?:TASK|RUNNING HANDLER) \[(?:[\w.]+ : )?(.+?)\]", block)
        if header and re.search(r"^changed: ", block, re.M):
            changed.add(header.group(1))
    return changed


def test_check_diff_on_a_converged_host_shows_exactly_the_change_and_never_a_secret(host):
    proxied = next(app for app in APPS if app.get("apache_client", "proxy") == "proxy")
    vhost = host.file(f"/etc/apache2/sites-available/scgi-{proxied['name']}.conf")
    vhost_before = vhost.content_string
    (old_line,) = [line for line in vhost_before.splitlines() if line.strip().startswith("ProxyPass ")
                   and line.endswith(" timeout=60")]
    # A new secret for a plain app: its secret.env would change, so there is a diff that no_log must hide.
    target = PLAIN_APPS[0]
    secret_file = f"/etc/scgi/{target['name']}/secret.env"
    secret_before = host.file(secret_file).sha256sum
    new_secret = f"check-mode-secret-{uuid.uuid4().hex}"
    apps = [{**app, "secret_env": {**app.get("secret_env", {}), "PYHOST_CHECK_SECRET": new_secret}}
            if app is target else app for app in APPS]

    status, output = run_site(CHECK_DIFF, scgi_site_proxy_timeout=61, scgi_apps=apps)

    assert status == 0, output[-3000:]
    # Only what the two edits imply would change: nothing else of a converged host.
    assert changed_tasks(output) - {
        "Reload systemd's view of the units",
        "Start each app, restarting those whose code, environment or unit changed",
        "Reload Apache",
    } == {"Write each app's secret environment", "Write each app's virtual host"}, output[-5000:]
    assert f"\n-{old_line}\n" in output, output[-5000:]
    assert f"\n+{old_line.replace(' timeout=60', ' timeout=61')}\n" in output, output[-5000:]
    secrets = [new_secret, *(value for app in APPS for value in (app.get("secret_env") or {}).values())]
    django_keys = [host.file(f"/etc/scgi/{app['name']}/django-secret-key.env").content_string.strip().split("=", 1)[1]
                   for app in APPS if app.get("django")]
    for secret in secrets + django_keys:
        assert secret not in output
    assert vhost.content_string == vhost_before
    assert host.file(secret_file).sha256sum == secret_before


# --- keep_data ----------------------------------------------------------------

KEEPER = {"name": "keeper", "server_name": "keeper.test", "source": {"path": HELLO},
          "wsgi": "hello:application", "mount": "/"}
HOME = "/srv/scgi/keeper"
MEDIA_FILE = f"{HOME}/media/kept.txt"
STATE_FILE = f"{HOME}/state/kept.db"
GONE_WITH_THE_APP = ["/etc/scgi/keeper", "/var/lib/pyhost-scgi/keeper", "/run/scgi-keeper",
                     "/etc/systemd/system/scgi-keeper.service", "/etc/systemd/system/scgi-keeper.socket",
                     "/etc/apache2/sites-available/scgi-keeper.conf", "/etc/apache2/sites-enabled/scgi-keeper.conf"]


def deploy(app: dict[str, Any]) -> None:
    # Only this app: the others are not in the list, so the play leaves them as they are.
    status, output = run_site(scgi_apps=[app])
    assert status == 0, output[-3000:]


def owner_and_mode(host, path: str) -> tuple[str, str, int]:
    found = host.file(path)
    return found.user, found.group, found.mode


def test_keep_data_keeps_user_media_and_state_and_present_reuses_them(host):
    deploy(KEEPER)
    content = f"kept {uuid.uuid4().hex}\n"
    host.run_test(f"printf %s '{content}' > {MEDIA_FILE} && chown keeper {MEDIA_FILE}")
    host.run_test(f"echo state > {STATE_FILE} && chown keeper:keeper {STATE_FILE} && chmod 0600 {STATE_FILE}")
    kept = [f"{HOME}/media", f"{HOME}/state", MEDIA_FILE, STATE_FILE]
    before = {path: owner_and_mode(host, path) for path in kept}
    uid = host.user("keeper").uid

    deploy({"name": "keeper", "state": "absent", "keep_data": True})
    for path in GONE_WITH_THE_APP:
        assert not host.file(path).exists, path
    assert sorted(host.check_output(f"ls -A {HOME}").split()) == ["media", "state"]
    assert {path: owner_and_mode(host, path) for path in kept} == before
    assert host.file(MEDIA_FILE).content_string == content
    assert host.user("keeper").exists and host.user("keeper").uid == uid
    assert host.group("keeper").exists
    assert host.run("systemctl list-units --all --no-legend 'scgi-keeper*'").stdout.strip() == ""
    assert fetch(KEEPER, "/media/kept.txt").status == 404  # the catch-all site: no vhost claims keeper.test

    deploy(KEEPER)
    assert host.user("keeper").uid == uid
    assert {path: owner_and_mode(host, path) for path in kept} == before
    resp = fetch(KEEPER, "/media/kept.txt")
    assert resp.status == 200
    assert resp.text == content
    assert fetch(KEEPER, "/").status == 200

    deploy({"name": "keeper", "state": "absent"})
    for path in [HOME, *GONE_WITH_THE_APP]:
        assert not host.file(path).exists, path
    assert not host.user("keeper").exists
    assert not host.group("keeper").exists
    assert host.run("systemctl list-units --all --no-legend 'scgi-keeper*'").stdout.strip() == ""
