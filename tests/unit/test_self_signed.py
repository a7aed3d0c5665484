"""pyhost.scgi.self_signed, the module that keeps each site's self-signed key and certificate: made, kept,
made anew when its names change or it nears its end, check mode, and its refusals, with the real openssl on a
real directory tree."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import plugin

self_signed = plugin("modules/self_signed.py")


def run(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def names_of(pem: Path) -> str:
    return run(["openssl", "x509", "-in", str(pem), "-noout", "-ext", "subjectAltName"])[1].split("\n")[1].strip()


def test_makes_a_key_and_certificate_that_load_then_keeps_them(tmp_path: Path) -> None:
    pem = tmp_path / "scgi-site-demo.test.pem"
    entry = {"path": str(pem), "names": ["demo.test", "www.demo.test"]}

    assert self_signed.apply([entry], check_mode=False, run_command=run) == [str(pem)]

    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(pem)  # what Apache needs: the key and its certificate
    assert names_of(pem) == "DNS:demo.test, DNS:www.demo.test"
    assert "CN=demo.test" in run(["openssl", "x509", "-in", str(pem), "-noout", "-subject"])[1].replace(" ", "")
    made = pem.read_bytes()
    # The same names in another order: kept.
    assert self_signed.apply([{**entry, "names": ["www.demo.test", "demo.test"]}], False, run) == []
    assert pem.read_bytes() == made
    assert sorted(os.listdir(tmp_path)) == [pem.name]  # no work directory left


def test_new_names_or_a_near_end_make_it_anew(tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    self_signed.apply([{"path": str(pem), "names": ["demo.test"]}], False, run)
    made = pem.read_bytes()

    assert self_signed.apply([{"path": str(pem), "names": ["demo.test", "*.demo.test"]}], False, run) == [str(pem)]
    assert names_of(pem) == "DNS:demo.test, DNS:*.demo.test"
    assert pem.read_bytes() != made
    # Valid for 825 days: with 900 days' notice it is made anew, every time.
    assert self_signed.apply([{"path": str(pem), "names": ["demo.test", "*.demo.test"]}], False, run,
                             renew_days=900) == [str(pem)]


def test_check_mode_reports_and_makes_nothing(tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    assert self_signed.apply([{"path": str(pem), "names": ["demo.test"]}], True, run) == [str(pem)]
    assert not pem.exists()
    pem.write_text("not a certificate\n")
    assert self_signed.apply([{"path": str(pem), "names": ["demo.test"]}], True, run) == [str(pem)]
    assert pem.read_text() == "not a certificate\n"


def test_a_link_in_its_place_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x\n")
    (tmp_path / "site.pem").symlink_to(target)
    with pytest.raises(self_signed.Refused, match="is not a regular file"):
        self_signed.apply([{"path": str(tmp_path / "site.pem"), "names": ["demo.test"]}], False, run)
    assert target.read_text() == "x\n"


@pytest.mark.parametrize("name", ["demo.test/O=evil", "demo.test,DNS:evil.test", "-demo.test", "", "a..test"])
def test_a_name_that_is_not_a_host_name_is_refused_before_anything_changes(tmp_path: Path, name: str) -> None:
    good = {"path": str(tmp_path / "good.pem"), "names": ["good.test"]}
    with pytest.raises(self_signed.Refused, match="is not a host name"):
        self_signed.apply([good, {"path": str(tmp_path / "bad.pem"), "names": ["bad.test", name]}], False, run)
    assert os.listdir(tmp_path) == []
