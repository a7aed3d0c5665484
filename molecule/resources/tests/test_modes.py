"""Check mode and diff on a converged host, and an app removed with keep_data and brought back.

These runs connect as a user who is not root and becomes root with sudo, as
many operators do; the converge connected as root, on a host without sudo.
"""

from __future__ import annotations

import glob
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import APPS, HELLO, HOST_NAME, PLAIN_APPS, PROJECT, fetch, part_path, port_of, probe_path, run_site, site_vhost_path

testinfra_hosts = [HOST_NAME]
CHECK_DIFF = ["--check", "--diff"]
SUDO_USER = "deploy"


@pytest.fixture(scope="module")
def sudo_user(host) -> str:
    """A login that becomes root with sudo; the image has no sudo, so this test's own setup installs it."""
    host.run_test("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo")
    host.run_test(f"id {SUDO_USER} || useradd --create-home --shell /bin/sh {SUDO_USER}")
    host.run_test(f"echo '{SUDO_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SUDO_USER}"
                  f" && chmod 0440 /etc/sudoers.d/{SUDO_USER}")
    return SUDO_USER


def changed_tasks(output: str) -> set[str]:
    """Names of the tasks and handlers that reported a change."""
    changed = set()
    for block in re.split(r"^(?=TASK \[|RUNNING HANDLER \[)", output, flags=re.M):
        header = re.match(r"(?:TASK|RUNNING HANDLER) \[(?:[\w.]+ : )?(.+?)\]", block)
        if header and re.search(r"^changed: ", block, re.M):
            changed.add(header.group(1))
    return changed


def test_check_diff_on_a_converged_host_shows_exactly_the_change_and_never_a_secret(host, sudo_user):
    proxied = next(app for app in APPS if app.get("apache_client", "proxy") == "proxy")
    vhost = host.file(part_path(proxied))
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

    status, output = run_site(CHECK_DIFF, scgi_site_proxy_timeout=61, scgi_apps=apps, ansible_user=sudo_user)

    assert status == 0, output[-3000:]
    # Only what the two edits imply would change: nothing else of a converged host.
    assert changed_tasks(output) - {
        "Reload systemd's view of the units",
        "Restart the apps whose code, environment or unit changed",
        "Reload Apache",
    } == {"Write each app's secret environment", "Write each site's virtual host and each app's part of it"}, output[-5000:]
    assert f"\n-{old_line}\n" in output, output[-5000:]
    assert f"\n+{old_line.replace(' timeout=60', ' timeout=61')}\n" in output, output[-5000:]
    secrets = [new_secret, *(value for app in APPS for value in (app.get("secret_env") or {}).values())]
    django_keys = [host.file(f"/etc/scgi/{app['name']}/django-secret-key.env").content_string.strip().split("=", 1)[1]
                   for app in APPS if app.get("django")]
    for secret in secrets + django_keys:
        assert secret not in output
    assert vhost.content_string == vhost_before
    assert host.file(secret_file).sha256sum == secret_before


# --- every tag alone ------------------------------------------------------------

# Every tag the roles' main.yml files give their stages (the README lists the same ones).
TAGS = sorted({tag for path in glob.glob(f"{PROJECT}/roles/*/tasks/main.yml")
               for line in open(path, encoding="utf-8")
               for tag in re.findall(r"\b(?:apache|scgi_worker|scgi_site)_\w+", line) if "tags:" in line})


TAG_RUNS_OF_SCENARIO = {"default": "check", "debian13": "real"}


def run_tags_in_order(runs: list[tuple[list[str], dict[str, Any]]]) -> list[tuple[str, int, str]]:
    results = []
    for cli_args, extra_vars in runs:
        status, output = run_site(cli_args, **extra_vars)
        results.append((" ".join(cli_args), status, output))
    return results


def main_pids(host) -> dict[str, str]:
    return {app["name"]: host.check_output(f"systemctl show -P MainPID scgi-{app['name']}.service") for app in APPS}


def test_every_tag_runs_alone_in_check_mode_and_for_real(host):
    """Each tag alone changes nothing on a converged host, in check mode and for real, except what it is
    given to change: --tags scgi_worker_configure with a new environment restarts that app (a handler) and
    no other. Up to four lanes at once: two of check runs, Apache's and the sites' tags, the workers'
    (the only lane that runs apt)."""
    assert len(TAGS) == 8, TAGS
    target = PLAIN_APPS[0]
    greeting = f"tag-{uuid.uuid4().hex[:8]}"
    changed_env = [{**app, "env": {**(app.get("env") or {}), "HELLO_GREETING": greeting}} if app is target else app
                   for app in APPS]
    front = [tag for tag in TAGS if tag.startswith(("apache_configure", "apache_run", "scgi_site"))]
    workers = [tag for tag in TAGS if tag not in front]
    checks = [(["--check", "--tags", tag], {}) for tag in TAGS]
    lanes_of_kind = {
        "check": [checks[::2], checks[1::2]],
        "real": [[(["--tags", tag], {}) for tag in front],
                 [(["--tags", tag], {}) for tag in workers if tag != "scgi_worker_configure"]],
    }
    # The roles' tasks are the same on Debian 12 and 13: the two scenarios, which run at the same
    # time, share the work (any other scenario does all of it).
    kind = TAG_RUNS_OF_SCENARIO.get(os.environ.get("MOLECULE_SCENARIO_NAME", ""))
    lanes = lanes_of_kind[kind] if kind else lanes_of_kind["check"] + lanes_of_kind["real"]
    pids_before = main_pids(host)
    with ThreadPoolExecutor(len(lanes)) as pool:
        results = [result for lane in pool.map(run_tags_in_order, lanes) for result in lane]
    for args, status, output in results:
        assert status == 0, (args, output[-3000:])
        assert changed_tasks(output) == set(), (args, output[-3000:])
    assert main_pids(host) == pids_before

    try:
        status, output = run_site(["--tags", "scgi_worker_configure"], scgi_apps=changed_env)
        assert status == 0, output[-3000:]
        assert changed_tasks(output) == {"Write each app's configuration directory, sandbox, environment and settings",
                                         "Restart the apps whose code, environment or unit changed"}
        assert fetch(target, probe_path(target)).json()["greeting"] == greeting
        pids_after = main_pids(host)
        assert pids_after[target["name"]] != pids_before[target["name"]]
        assert {n: p for n, p in pids_after.items() if n != target["name"]} == \
            {n: p for n, p in pids_before.items() if n != target["name"]}
    finally:
        status, output = run_site(["--tags", "scgi_worker_configure"])
        assert status == 0, output[-3000:]


# --- keep_data, under a host name another app serves too ----------------------

NEIGHBOUR = APPS[0]
KEEPER_PORT = 4777
# It shares NEIGHBOUR's site: the same aliases and TLS settings.
KEEPER = {"name": "keeper", "server_name": NEIGHBOUR["server_name"],
          "server_aliases": NEIGHBOUR.get("server_aliases", []), "tls": NEIGHBOUR.get("tls"), "source": {"path": HELLO},
          "wsgi": "hello:application", "mount": "/keeper/", "listen": f"127.0.0.1:{KEEPER_PORT}"}
# The TCP ports of the scenario's apps, which runs for keeper alone must keep closed to strangers.
TCP_PORTS = sorted(port_of(app) for app in APPS if app.get("listen", "unix") != "unix")
HOME = "/srv/scgi/keeper"
MEDIA_FILE = f"{HOME}/media/kept.txt"
STATE_FILE = f"{HOME}/state/kept.db"
# The per-app vhost of releases before 0.2: a run moves the app into its site.
OLD_VHOST = "/etc/apache2/sites-available/scgi-keeper.conf"
OLD_VHOST_LINK = "/etc/apache2/sites-enabled/scgi-keeper.conf"
GONE_WITH_THE_APP = ["/etc/scgi/keeper", "/var/lib/pyhost-scgi/keeper", "/run/scgi-keeper",
                     "/etc/systemd/system/scgi-keeper.service", "/etc/systemd/system/scgi-keeper.socket",
                     part_path(KEEPER), OLD_VHOST, OLD_VHOST_LINK]


def deploy(app: dict[str, Any], user: str) -> None:
    # Only this app: the others are not in the list, so the play leaves them as they are.
    status, output = run_site(scgi_apps=[app], ansible_user=user)
    assert status == 0, output[-3000:]


def owner_and_mode(host, path: str) -> tuple[str, str, int]:
    found = host.file(path)
    return found.user, found.group, found.mode


def closed_ports(host) -> list[int]:
    """The ports in the collection's nftables set: open to Apache's group and root only."""
    listed = json.loads(host.check_output("nft -j list set inet pyhost_scgi app_ports"))
    return sorted(next(item["set"] for item in listed["nftables"] if "set" in item).get("elem", []))


def neighbour_answers() -> bool:
    return fetch(NEIGHBOUR, probe_path(NEIGHBOUR)).status == 200


def test_keep_data_keeps_user_media_and_state_and_present_reuses_them(host, sudo_user):
    host.run_test(f"printf '<VirtualHost *:80>\\nServerName keeper-old.test\\n</VirtualHost>\\n' > {OLD_VHOST}"
                  " && a2ensite -q scgi-keeper")
    since = host.check_output("date +%s")
    host.run_test("nft delete table inet pyhost_scgi")  # flushed by another tool: the next run puts it back
    deploy(KEEPER, sudo_user)
    assert closed_ports(host) == sorted([*TCP_PORTS, KEEPER_PORT])
    # The plays became root through sudo, as the connection user was not root.
    assert f"{sudo_user} : " in host.check_output(f"journalctl --no-pager -o cat _COMM=sudo --since @{since}")
    assert not host.file(OLD_VHOST).exists and not host.file(OLD_VHOST_LINK).exists
    assert fetch(KEEPER, "/keeper/").status == 200
    assert neighbour_answers()
    content = f"kept {uuid.uuid4().hex}\n"
    host.run_test(f"printf %s '{content}' > {MEDIA_FILE} && chown keeper {MEDIA_FILE}")
    host.run_test(f"echo state > {STATE_FILE} && chown keeper:keeper {STATE_FILE} && chmod 0600 {STATE_FILE}")
    kept = [f"{HOME}/media", f"{HOME}/state", MEDIA_FILE, STATE_FILE]
    before = {path: owner_and_mode(host, path) for path in kept}
    uid = host.user("keeper").uid

    deploy({"name": "keeper", "state": "absent", "keep_data": True}, sudo_user)
    assert closed_ports(host) == TCP_PORTS
    for path in GONE_WITH_THE_APP:
        assert not host.file(path).exists, path
    assert sorted(host.check_output(f"ls -A {HOME}").split()) == ["media", "state"]
    assert {path: owner_and_mode(host, path) for path in kept} == before
    assert host.file(MEDIA_FILE).content_string == content
    assert host.user("keeper").exists and host.user("keeper").uid == uid
    assert host.group("keeper").exists
    assert host.run("systemctl list-units --all --no-legend 'scgi-keeper*'").stdout.strip() == ""
    # The site stays for the app that shares the host name, and it still answers.
    assert host.file(site_vhost_path(NEIGHBOUR)).exists
    assert neighbour_answers()
    assert fetch(KEEPER, "/keeper/media/kept.txt").status == 404

    deploy(KEEPER, sudo_user)
    assert host.user("keeper").uid == uid
    assert {path: owner_and_mode(host, path) for path in kept} == before
    resp = fetch(KEEPER, "/keeper/media/kept.txt")
    assert resp.status == 200
    assert resp.text == content
    assert fetch(KEEPER, "/keeper/").status == 200

    deploy({"name": "keeper", "state": "absent"}, sudo_user)
    for path in [HOME, *GONE_WITH_THE_APP]:
        assert not host.file(path).exists, path
    assert not host.user("keeper").exists
    assert not host.group("keeper").exists
    assert host.run("systemctl list-units --all --no-legend 'scgi-keeper*'").stdout.strip() == ""
    assert neighbour_answers()
