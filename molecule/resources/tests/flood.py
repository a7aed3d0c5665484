"""A flood of slow requests to one app while another is measured: what the Molecule scenarios use to show that one
app never takes the others down. Bounded in clients, time and requests; it sends only what its callers send."""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

# Where the apache role writes each app's budget and Apache's thread count.
BUDGETS = "/etc/apache2/conf-enabled/pyhost-scgi-budgets.conf"

# One request: its status and its Retry-After header (None where there is none); an exception is an error.
Request = Callable[[], tuple[int, str | None]]


@dataclass
class Answers:
    statuses: list[int | str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    retry_after: list[str | None] = field(default_factory=list)

    def add(self, status: int | str, seconds: float, retry_after: str | None) -> None:
        self.statuses.append(status)
        self.seconds.append(seconds)
        self.retry_after.append(retry_after)

    def of(self, status: int) -> list[int]:
        return [index for index, got in enumerate(self.statuses) if got == status]


def _timed(request: Request) -> tuple[int | str, float, str | None]:
    start = time.monotonic()
    try:
        status, retry_after = request()
    except Exception as error:  # noqa: BLE001 - every failure counts, by its kind
        status, retry_after = type(error).__name__, None
    return status, time.monotonic() - start, retry_after


def flood(flooded: Request, probe: Request, clients: int, seconds: float) -> tuple[Answers, Answers]:
    """For `seconds`, `clients` clients ask `flooded` again and again (after a 503, once its Retry-After has
    passed, as a well-behaved client does, each after its own share of another second, as clients that are not
    in step would), while two clients ask `probe` again and again. Returns the flood's answers and the probe's.
    No request outlives seconds + the requests' own timeout."""
    lock = threading.Lock()
    flood_answers, probe_answers = Answers(), Answers()
    end = time.monotonic() + seconds

    def flood_client() -> None:
        while time.monotonic() < end:
            status, took, retry_after = _timed(flooded)
            with lock:
                flood_answers.add(status, took, retry_after)
            if status == 503:
                time.sleep(min(float(retry_after or 1), 2.0) + random.random())

    def probe_client() -> None:
        while time.monotonic() < end:
            status, took, retry_after = _timed(probe)
            with lock:
                probe_answers.add(status, took, retry_after)
            time.sleep(0.05)

    threads = [threading.Thread(target=flood_client, daemon=True) for _client in range(clients)]
    threads += [threading.Thread(target=probe_client, daemon=True) for _probe in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return flood_answers, probe_answers


def seconds_until(request: Request, bound: float) -> float | None:
    """How long until `request` answers 200 (polled every 0.2 s), or None if not within `bound` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        if _timed(request)[0] == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def budgets(conf: str) -> tuple[int, dict[str, int]]:
    """Apache's worker threads and each app's budget, as the text of BUDGETS says."""
    threads = int(re.search(r"^\s*MaxRequestWorkers (\d+)$", conf, re.MULTILINE).group(1))
    return threads, {name: int(budget) for name, budget
                     in re.findall(r"^\s*QS_EventRequestLimit pyhost_scgi_budget_(\w+) (\d+)$", conf, re.MULTILINE)}


def refused_microseconds(access_log: str) -> list[int]:
    """How long Apache took for each 503 in the lines of an app's access log (its last field, %D)."""
    return [int(took) for took in re.findall(r'" 503 \S+ "[^"]*" "[^"]*" (\d+)$', access_log, re.MULTILINE)]


def assert_contained(flooded: Answers, measured: Answers, budget: int, seconds: float, slow: float,
                     refused: list[int]) -> None:
    """What a flood of `seconds` with requests of `slow` seconds must leave: the other app served throughout,
    every request and none waiting long (without budgets: not once); the flooded app serving up to its budget,
    and telling the rest at once (503, Retry-After) to come back later: `refused` are Apache's own durations
    of the 503s, in microseconds (the clients' clocks would count the test's own threads too)."""
    assert Counter(measured.statuses) == {200: len(measured.statuses)}, Counter(measured.statuses)
    assert len(measured.statuses) >= 20
    assert max(measured.seconds) < slow
    assert set(flooded.statuses) <= {200, 503}, Counter(flooded.statuses)
    assert flooded.of(503) and {flooded.retry_after[index] for index in flooded.of(503)} == {"1"}
    assert len(refused) >= len(flooded.of(503))
    assert statistics.quantiles(refused, n=100)[98] < 1_000_000
    assert 0 < len(flooded.of(200)) <= budget * (seconds // slow + 2)
