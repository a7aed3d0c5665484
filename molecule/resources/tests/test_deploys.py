"""Deploys nobody notices: new releases of the apps go live under load, and no request fails."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import APPS, HOST_NAME, fetch, kind, mount, run_site

testinfra_hosts = [HOST_NAME]

# The load: 2 clients per app, each sending requests one after the other, as
# fast as the app answers. Bounded: it stops when told, and in any case after
# LOAD_SECONDS or LOAD_REQUESTS requests.
CLIENTS_PER_APP = 2
LOAD_SECONDS = 300
LOAD_REQUESTS = 100_000


def release_path(app: dict[str, Any]) -> str:
    """A page of the app that says which release served it (release.txt, see the apps)."""
    return mount(app) + {"django": "echo/", "flask": "sleep", "hello": ""}[kind(app)]


def load(stop: threading.Event) -> dict[str, list[tuple[float, object, object]]]:
    """Requests to every app through Apache until stop: per app, (time, status or error kind, release)."""
    deadline = time.monotonic() + LOAD_SECONDS
    answers: dict[str, list[tuple[float, object, object]]] = defaultdict(list)
    count = 0

    def client(app: dict[str, Any]) -> None:
        nonlocal count
        while not stop.is_set() and time.monotonic() < deadline and count < LOAD_REQUESTS:
            try:
                resp = fetch(app, release_path(app))
                answer = (time.monotonic(), resp.status, resp.json().get("release") if resp.status == 200 else None)
            except Exception as error:  # noqa: BLE001 - counted by kind: the test fails on any
                answer = (time.monotonic(), type(error).__name__, None)
            answers[app["name"]].append(answer)
            count += 1

    with ThreadPoolExecutor(CLIENTS_PER_APP * len(APPS)) as pool:
        for app in APPS * CLIENTS_PER_APP:
            pool.submit(client, app)
    return {name: sorted(app_answers, key=lambda answer: answer[0]) for name, app_answers in answers.items()}


def main_pids(host) -> list[str]:
    return [host.check_output(f"systemctl show --property=MainPID --value scgi-{app['name']}.service") for app in APPS]


def test_new_releases_deployed_under_load_fail_no_request(host, tmp_path):
    """Every app of the scenario at once: both methods, the three protocols and mod_scgi."""
    releases, apps = {}, []
    for app in APPS:
        code = tmp_path / app["name"]
        shutil.copytree(app["source"]["path"], code, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
        releases[app["name"]] = uuid.uuid4().hex
        (code / "release.txt").write_text(releases[app["name"]] + "\n", encoding="utf-8")
        apps.append({**app, "source": {"path": str(code)}})
    before = main_pids(host)

    stop = threading.Event()
    try:
        with ThreadPoolExecutor(1) as runner:
            loading = runner.submit(load, stop)
            time.sleep(2)  # under load before the deploy starts
            status, output = run_site(scgi_apps=apps)
            time.sleep(2)  # and after it
            stop.set()
            answers = loading.result()
        # What each app serves once the run is over: 4 requests per child at most.
        after = {app["name"]: {fetch(app, release_path(app)).json()["release"] for _ in range(12)} for app in APPS}
    finally:
        stop.set()
        # The scenario's own releases again, for the tests that follow.
        restored, restore_output = run_site()
        assert restored == 0, restore_output[-3000:]

    assert status == 0, output[-3000:]
    # The deploy restarted every app while the load ran.
    assert not set(before) & set(main_pids(host))
    for app in APPS:
        app_answers = answers[app["name"]]
        assert Counter(outcome for _, outcome, _ in app_answers) == {200: len(app_answers)}, app["name"]
        assert len(app_answers) > 20, app["name"]
        # The old release answered first, and only the new one answers once the run is over. (In between,
        # a prefork process of the old release may import a module of the new one: the code is replaced
        # in place before the restart. Releases in directories of their own will end that.)
        assert app_answers[0][2] is None, app["name"]
        assert after[app["name"]] == {releases[app["name"]]}, app["name"]
