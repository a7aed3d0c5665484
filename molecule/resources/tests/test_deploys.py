"""Deploys nobody notices: a new release of an app goes live under load, and no request fails."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from conftest import APPS, HELLO, HOST_NAME, fetch, mount, run_site

testinfra_hosts = [HOST_NAME]
# hello is threaded in the default scenario and prefork (max_requests 3: its
# processes are replaced all the time) in debian13.
HELLO_APP = next(app for app in APPS if app["name"] == "hello")

# The load: 8 clients, as many requests as they can, some of them held by the
# app for a while so that requests are in flight when the restart comes.
# Bounded: it stops when told, and in any case after LOAD_SECONDS or
# LOAD_REQUESTS requests.
CLIENTS = 8
LOAD_SECONDS = 300
LOAD_REQUESTS = 50_000


def load(stop: threading.Event) -> list[tuple[float, object, object]]:
    """Requests to hello through Apache until stop: (time, status or error kind, release) each."""
    deadline = time.monotonic() + LOAD_SECONDS
    answers: list[tuple[float, object, object]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        path = mount(HELLO_APP) + ("sleep?seconds=0.5" if number == 0 else "")
        while not stop.is_set() and time.monotonic() < deadline and len(answers) < LOAD_REQUESTS:
            try:
                resp = fetch(HELLO_APP, path)
                answer = (time.monotonic(), resp.status, resp.json().get("release") if resp.status == 200 else None)
            except Exception as error:  # noqa: BLE001 - counted by kind, the test fails on any
                answer = (time.monotonic(), type(error).__name__, None)
            with lock:
                answers.append(answer)

    with ThreadPoolExecutor(CLIENTS) as pool:
        for number in range(CLIENTS):
            pool.submit(client, number)
    return sorted(answers, key=lambda answer: answer[0])


def test_a_code_change_deployed_under_load_fails_no_request(host, tmp_path):
    code = tmp_path / "hello"
    shutil.copytree(HELLO, code)
    release = str(uuid.uuid4())
    (code / "release.txt").write_text(release + "\n", encoding="utf-8")
    main_pid = host.check_output("systemctl show --property=MainPID --value scgi-hello.service")

    stop = threading.Event()
    try:
        with ThreadPoolExecutor(1) as runner:
            loading = runner.submit(load, stop)
            time.sleep(2)  # under load before the deploy starts
            status, output = run_site(scgi_apps=[{**app, "source": {"path": str(code)}} if app is HELLO_APP else app
                                                 for app in APPS])
            time.sleep(2)  # and after it
            stop.set()
            answers = loading.result()
    finally:
        stop.set()
        # The scenario's own release again, for the tests that follow.
        restored, restore_output = run_site()
        assert restored == 0, restore_output[-3000:]

    assert status == 0, output[-3000:]
    # The deploy did restart hello while the load ran.
    assert host.check_output("systemctl show --property=MainPID --value scgi-hello.service") != main_pid
    outcomes = Counter(outcome for _, outcome, _ in answers)
    assert outcomes == {200: len(answers)}, outcomes
    assert len(answers) > 100
    # The answers switch from the old release to the new one, once.
    releases = [answer_release for _, _, answer_release in answers]
    assert releases[0] is None and releases[-1] == release
    switch = releases.index(release)
    assert set(releases[:switch]) == {None} and set(releases[switch:]) == {release}
