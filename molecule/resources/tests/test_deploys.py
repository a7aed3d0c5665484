"""Deploys nobody notices: new releases of the apps go live under load, and are rolled back under load, and
no request fails."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import APPS, HELLO, HOST_NAME, fetch, kind, mount, run_playbook, run_site

testinfra_hosts = [HOST_NAME]

# The load: 2 clients per app, each sending requests one after the other with
# LOAD_PAUSE between them: about 40 requests a second per app, enough to see
# any gap of a restart (an app takes about a second to import), and not so
# many that the load starves the run it watches of the machine's two cores
# (bench/deploy-under-load loads as fast as the apps answer). Bounded: it stops
# when told, and in any case after LOAD_SECONDS or LOAD_REQUESTS requests. The
# bounds are above what a run may take (run_playbook's timeout, 900 s);
# under_load fails if the load ended before the run did.
CLIENTS_PER_APP = 2
LOAD_PAUSE = 0.05
LOAD_SECONDS = 960
LOAD_REQUESTS = 1_000_000


def release_path(app: dict[str, Any]) -> str:
    """A page of the app that says which release served it (release.txt, see the apps)."""
    return mount(app) + {"django": "echo/", "flask": "sleep", "hello": ""}[kind(app)]


def new_release(app: dict[str, Any], code, release: str) -> dict[str, Any]:
    """The app's code with a release.txt of RELEASE, as the source of a new release: a copy of its source
    directory, or for a git source a new commit on a branch of its repository (git's `version`)."""
    if "git" not in app["source"]:
        shutil.copytree(app["source"]["path"], code, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
        (code / "release.txt").write_text(release + "\n", encoding="utf-8")
        return {"path": str(code)}
    repo = app["source"]["git"]["repo"]
    git = ["git", "-C", str(code), "-c", "user.name=molecule", "-c", "user.email=molecule@invalid"]
    subprocess.run(["git", "clone", "--quiet", repo, str(code)], check=True, timeout=60)
    (code / "release.txt").write_text(release + "\n", encoding="utf-8")
    for command in (["add", "release.txt"], ["commit", "--quiet", "-m", f"release {release}"],
                    ["push", "--quiet", "origin", f"HEAD:refs/heads/release-{release}"]):
        subprocess.run([*git, *command], check=True, timeout=60)
    return {"git": {"repo": repo, "version": f"release-{release}"}}


def head_commit(app: dict[str, Any]) -> str:
    return subprocess.run(["git", "-C", app["source"]["git"]["repo"], "rev-parse", f"{app['source']['git']['version']}^{{commit}}"],
                          check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def load(stop: threading.Event) -> dict[str, list[tuple[float, object, object]]]:
    """Requests to every app through Apache until stop: per app, (time, status or error kind, release)."""
    deadline = time.monotonic() + LOAD_SECONDS
    answers: dict[str, list[tuple[float, object, object]]] = defaultdict(list)
    count = 0

    def client(app: dict[str, Any]) -> None:
        nonlocal count
        while not stop.is_set() and time.monotonic() < deadline and count < LOAD_REQUESTS:
            try:
                # Apache closes first: the TIME_WAITs of the connections are the server's, and do not use up
                # this machine's ephemeral ports.
                resp = fetch(app, release_path(app), headers={"Connection": "close"})
                answer = (time.monotonic(), resp.status, resp.json().get("release") if resp.status == 200 else None)
            except Exception as error:  # noqa: BLE001 - counted by kind: the test fails on any
                answer = (time.monotonic(), type(error).__name__, str(error))
            answers[app["name"]].append(answer)
            count += 1
            stop.wait(LOAD_PAUSE)

    with ThreadPoolExecutor(CLIENTS_PER_APP * len(APPS)) as pool:
        for app in APPS * CLIENTS_PER_APP:
            pool.submit(client, app)
    return {name: sorted(app_answers, key=lambda answer: answer[0]) for name, app_answers in answers.items()}


def main_pids(host) -> list[str]:
    return [host.check_output(f"systemctl show --property=MainPID --value scgi-{app['name']}.service") for app in APPS]


def under_load(action):
    """Run action() (a playbook run) while every app is under load; its result and the answers to the load."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as runner:
        loading = runner.submit(load, stop)
        try:
            time.sleep(2)  # under load before the run starts
            result = action()
            time.sleep(2)  # and after it
            load_ended_first = loading.done()
        finally:
            stop.set()
        answers = loading.result()
        assert not load_ended_first, f"the load reached its bound before the run ended: {sum(map(len, answers.values()))} requests"
        return result, answers


def releases_served(answers: list[tuple[float, object, object]]) -> list[object]:
    """The releases that answered, in order, each once per stretch."""
    served = [release for _time, _outcome, release in answers]
    return [release for index, release in enumerate(served) if index == 0 or release != served[index - 1]]


def assert_switched_once(answers: dict[str, list[tuple[float, object, object]]], old: dict, new: dict) -> None:
    """Every request of every app was answered 200, by the old release and then, from one moment on, only by
    the new one; and the new one alone answers now (4 requests per child at most)."""
    for app in APPS:
        app_answers = answers[app["name"]]
        failed = [answer for answer in app_answers if answer[1] != 200]
        assert not failed, (app["name"], Counter(outcome for _time, outcome, _release in failed), failed[:3])
        assert len(app_answers) > 20, app["name"]
        assert releases_served(app_answers) == [old[app["name"]], new[app["name"]]], app["name"]
        assert {fetch(app, release_path(app)).json()["release"] for _request in range(12)} == {new[app["name"]]}, app["name"]


def test_new_releases_deployed_then_rolled_back_under_load_fail_no_request(host, tmp_path):
    """Every app of the scenario at once: both methods, the three protocols and mod_scgi. The scenario's
    releases have no release.txt: they answer None."""
    scenario = {app["name"]: None for app in APPS}
    releases, apps = {}, []
    for app in APPS:
        releases[app["name"]] = uuid.uuid4().hex
        apps.append({**app, "source": new_release(app, tmp_path / app["name"], releases[app["name"]])})
    before = main_pids(host)

    rolled_back = False
    try:
        (status, output), answers = under_load(lambda: run_site(scgi_apps=apps))
        assert status == 0, output[-3000:]
        # The deploy restarted every app while the load ran, and each switched to its new release once: no
        # process of the old release imports a module of the new one (each runs on its own release's paths).
        deployed = main_pids(host)
        assert not set(before) & set(deployed)
        assert_switched_once(answers, scenario, releases)
        # A git source went live at the commit its version named, which the release records.
        for app in apps:
            if "git" in app["source"]:
                live = host.file(f"/srv/scgi/{app['name']}/current").linked_to
                assert host.file(f"{live}/commit").content_string.strip() == head_commit(app), app["name"]
        assert "PRIVATE KEY" not in output

        # Back to the scenario's releases, kept on the host: no download, no pip.
        names = ",".join(app["name"] for app in APPS)
        started = time.monotonic()
        (status, output), answers = under_load(lambda: run_playbook("rollback.yml", app=names))
        rollback_seconds = time.monotonic() - started - 4
        assert status == 0, output[-3000:]
        rolled_back = True
        assert not set(deployed) & set(main_pids(host))
        assert_switched_once(answers, releases, scenario)
        print(f"rollback of {len(APPS)} apps under load: {rollback_seconds:.1f} s")
    finally:
        if not rolled_back:
            # The scenario's own releases again, for the tests that follow.
            restored, restore_output = run_site()
            assert restored == 0, restore_output[-3000:]


def test_releases_beyond_three_are_removed_and_an_unknown_app_is_not_rolled_back(host):
    for app in APPS:
        releases = host.file(f"/srv/scgi/{app['name']}/releases")
        history = host.file(f"/srv/scgi/{app['name']}/releases/history").content_string.split()
        assert 1 <= len(history) <= 3 and set(releases.listdir()) >= {"history", *history}, app["name"]
        assert len(releases.listdir()) <= 4, app["name"]
        # The live release is the last that went live, and runs as the app from its own paths.
        live = host.file(f"/srv/scgi/{app['name']}/current").linked_to
        assert live.endswith(f"/releases/{history[-1]}"), app["name"]
    before = main_pids(host)
    status, output = run_playbook("rollback.yml", app="nosuchapp")
    assert status != 0
    assert "rollback.yml rolls back apps: -e app=NAME[,NAME...], each one of" in output
    assert main_pids(host) == before


def test_an_app_without_an_earlier_release_fails_the_rollback_and_the_others_still_roll_back(host, tmp_path):
    """solo has one release here, duo two: duo goes back and restarts, solo fails the run, naming itself."""
    second = tmp_path / "hello"
    shutil.copytree(HELLO, second, ignore=shutil.ignore_patterns("__pycache__"))
    (second / "release.txt").write_text("second\n", encoding="utf-8")
    solo = {"name": "solo", "server_name": "solo.test", "source": {"path": HELLO}, "wsgi": "hello:application"}
    duo = {**solo, "name": "duo", "server_name": "duo.test"}
    try:
        for duo_source in (HELLO, str(second)):
            apps = [*APPS, solo, {**duo, "source": {"path": duo_source}}]
            status, output = run_site(scgi_apps=apps)
            assert status == 0, output[-3000:]
        assert fetch(duo, "/").json()["release"] == "second"
        status, output = run_playbook("rollback.yml", app="solo,duo", scgi_apps=apps)
        assert status != 0
        assert "app solo: no release before the live one" in output, output[-3000:]
        assert fetch(duo, "/").json()["release"] is None  # restarted on the release before
    finally:
        status, output = run_site(scgi_apps=[*APPS, {"name": "solo", "state": "absent"},
                                             {"name": "duo", "state": "absent"}])
        assert status == 0, output[-3000:]
