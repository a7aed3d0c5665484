"""pyhost.scgi.key_pair, the module that installs a site's key and certificate chain once they load as a pair:
installed, kept, a mismatched pair refused with the live file untouched, check mode and a link in its place,
with keys and certificates made by the real openssl."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import plugin

key_pair = plugin("modules/key_pair.py")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[tuple[str, str]]:
    """Two keys, each with its self-signed certificate, as (key, certificate) PEM texts."""
    made = []
    for index in range(2):
        directory = tmp_path_factory.mktemp(f"pair{index}")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=example.org", "-keyout", str(directory / "key"),
                        "-out", str(directory / "cert")], check=True, capture_output=True)
        made.append(((directory / "key").read_text(), (directory / "cert").read_text()))
    return made


def test_installs_a_pair_then_keeps_it(tmp_path: Path, pairs) -> None:
    (key, cert), pem = pairs[0], tmp_path / "site.pem"
    assert key_pair.install(str(pem), key, cert, check_mode=False) is True
    assert pem.read_text() == f"{key.rstrip()}\n{cert.rstrip()}\n"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert key_pair.install(str(pem), key + "\n\n", cert, check_mode=False) is False
    pem.chmod(0o644)  # the key readable by all: made anew, root's alone again
    assert key_pair.install(str(pem), key, cert, check_mode=False) is True
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["site.pem"]  # no temporary file left


def test_a_key_of_another_certificate_is_refused_and_the_live_file_stays(tmp_path: Path, pairs) -> None:
    pem = tmp_path / "site.pem"
    key_pair.install(str(pem), *pairs[0], check_mode=False)
    live = pem.read_bytes()
    with pytest.raises(key_pair.Refused, match="do not load as a pair"):
        key_pair.install(str(pem), pairs[1][0], pairs[0][1], check_mode=False)
    with pytest.raises(key_pair.Refused, match="do not load as a pair"):
        key_pair.install(str(pem), "not a key", pairs[0][1], check_mode=False)
    assert pem.read_bytes() == live
    assert os.listdir(tmp_path) == ["site.pem"]


def test_check_mode_loads_the_pair_and_writes_nothing(tmp_path: Path, pairs) -> None:
    pem = tmp_path / "site.pem"
    key_pair.install(str(pem), *pairs[0], check_mode=False)
    live = pem.read_bytes()
    assert key_pair.install(str(pem), *pairs[1], check_mode=True) is True
    assert pem.read_bytes() == live
    # A host that has no TLS directory yet.
    assert key_pair.install(str(tmp_path / "none/site.pem"), *pairs[1], check_mode=True) is True
    with pytest.raises(key_pair.Refused, match="do not load as a pair"):
        key_pair.install(str(tmp_path / "none/site.pem"), pairs[0][0], pairs[1][1], check_mode=True)


def test_a_link_in_its_place_is_refused(tmp_path: Path, pairs) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x\n")
    (tmp_path / "site.pem").symlink_to(target)
    with pytest.raises(key_pair.Refused, match="is not a regular file"):
        key_pair.install(str(tmp_path / "site.pem"), *pairs[0], check_mode=False)
    assert target.read_text() == "x\n" and (tmp_path / "site.pem").is_symlink()
