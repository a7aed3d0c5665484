"""Bad input: each mistake fails the play, naming the app and the field, and the host stays as it was."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import APPS, HOST_NAME, TEST_CA, run_site

testinfra_hosts = [HOST_NAME]
GOOD = APPS[0]
# An operator's key, as the scenario gives it (relative to the inventory, or not), that is not the test CA's.
SITE_KEY = next(app["tls"]["key"] for app in APPS if app.get("tls") and app["tls"]["certificate"] == "files")

# What the play may change on the host: Apache, units, the apps' files, users. Not mod_md's store
# (/etc/apache2/md), which mod_md itself writes as it retries the ACME CA in the background.
FINGERPRINT = (
    "{ find /etc/apache2 /etc/systemd/system /etc/scgi /srv/scgi /var/lib/pyhost-scgi -path /etc/apache2/md -prune "
    "-o -printf '%p %m %u %g %s %T@\\n' | sort; getent passwd; getent group; } | sha256sum"
)


def variant(**changes: Any) -> dict[str, Any]:
    """The scenario's first app with CHANGES; a None value removes the field."""
    return {key: value for key, value in {**GOOD, **changes}.items() if value is not None}


BAD_INPUTS = [
    ("duplicate name", [GOOD, variant(server_name="other.test")], "app '{0}', field 'name': is defined twice"),
    ("duplicate host", [GOOD, variant(name="twin")], "app 'twin', field 'server_name+mount'"),
    ("duplicate port", [variant(listen="127.0.0.1:7000"),
                        variant(name="twin", server_name="twin.test", server_aliases=[], listen="127.0.0.1:7000")],
     "app 'twin', field 'listen': port 7000 is already used by app '{0}'"),
    ("invalid name", [variant(name="Bad-Name")], "app 'Bad-Name', field 'name'"),
    ("system user", [variant(name="root")], "app 'root', field 'name': is a system account"),
    ("dotdot path", [variant(static={"dir": "../../etc"})], "app '{0}', field 'static.dir'"),
    ("no source", [variant(source=None)], "app '{0}', field 'source': is required"),
    ("two sources", [variant(source={"path": "a", "archive": "b.tar"})], "app '{0}', field 'source': needs exactly one"),
    ("malformed wsgi", [variant(wsgi="not a callable")], "app '{0}', field 'wsgi'"),
    ("unknown protocol", [variant(protocol="http")], "app '{0}', field 'protocol'"),
    ("unknown method", [variant(method="forking")], "app '{0}', field 'method'"),
    ("unknown field", [variant(colour="blue")], "app '{0}', field 'colour': is not a known field"),
    ("public address", [variant(listen="0.0.0.0:7000")], "app '{0}', field 'listen'"),
    ("mod_scgi on unix", [variant(apache_client="mod_scgi", listen="unix")], "app '{0}', field 'listen': mod_scgi connects over TCP only"),
    ("existing user", [variant(name="intruder")],
     "app 'intruder', field 'name': a user or group 'intruder' already exists"),
    ("existing group", [variant(name="shadow")], "app 'shadow', field 'name': a user or group 'shadow' already exists"),
    ("existing group, absent", [GOOD, {"name": "sudo", "state": "absent"}],
     "app 'sudo', field 'name': a user or group 'sudo' already exists"),
    ("injected path", [variant(media={"dir": "media\nUser=root\nReadWritePaths=/."})], "app '{0}', field 'media.dir'"),
    ("missing source path", [variant(source={"path": "/nonexistent/app"})],
     "app '{0}', field 'source.path': '/nonexistent/app' is not a readable directory on the controller"),
    ("missing source archive", [variant(source={"archive": "dist/missing.tar.gz"})],
     "app '{0}', field 'source.archive': 'dist/missing.tar.gz' is not a readable file on the controller"),
    # Root rewrites releases/history: the app's media there would let it plant a link for root to follow.
    ("layout name", [variant(media={"dir": "releases"})], "app '{0}', field 'media.dir': 'releases' is a name"),
    ("path not in normal form", [variant(mount="/shop/../")], "app '{0}', field 'mount': '/shop/../' must be in normal form"),
    ("static over the mount", [variant(mount="/shop/", static={"url": "/"})],
     "app '{0}', field 'static.url': / would hide its own mount (/shop/)"),
    ("milliseconds for seconds", [variant(read_timeout=60000)], "app '{0}', field 'read_timeout': 60000 must be"),
    ("key of another certificate", [variant(tls={"certificate": "files", "cert": TEST_CA, "key": SITE_KEY})],
     "app '{0}', field 'tls.key'"),
    ("partly shared host name", [GOOD, variant(name="twin", mount="/twin/", server_aliases=["twin.test"])],
     "app 'twin', field 'server_aliases': apps under server_name"),
]


@pytest.fixture(scope="module")
def outcomes(host) -> dict[str, tuple[int, str, bool]]:
    """Each case's run: its status, its output and whether the host's fingerprint stayed the same.

    Up to four runs at once, none of which may change the host: the fingerprints before and after all of them
    prove it for each. "existing user" adds a user first, so it runs alone, between its own fingerprints."""
    found = {}
    host.run_test("useradd --system --no-create-home intruder")
    try:
        before = host.check_output(FINGERPRINT)
        status, output = run_site(scgi_apps=BAD_INPUTS[[case for case, _a, _m in BAD_INPUTS].index("existing user")][1])
        found["existing user"] = (status, output, host.check_output(FINGERPRINT) == before)
    finally:
        host.run_test("userdel intruder")
    others = [(case, apps) for case, apps, _message in BAD_INPUTS if case != "existing user"]
    before = host.check_output(FINGERPRINT)
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda apps: run_site(scgi_apps=apps), [apps for _case, apps in others]))
    unchanged = host.check_output(FINGERPRINT) == before
    found.update({case: (status, output, unchanged) for (case, _apps), (status, output) in zip(others, runs)})
    return found


@pytest.mark.parametrize(("case", "message"), [(case, message) for case, _apps, message in BAD_INPUTS],
                         ids=[case for case, _apps, _message in BAD_INPUTS])
def test_bad_input_fails_before_anything_changes(outcomes, case, message):
    status, output, unchanged = outcomes[case]
    assert status != 0
    assert message.format(GOOD["name"]) in output, output[-3000:]
    assert "PLAY [Check scgi_apps]" in output
    assert "PLAY [Run the apps]" not in output
    assert unchanged
