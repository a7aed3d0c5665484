"""pyhost.scgi.venv_state, the module that reads what each app's virtualenv depends on, on a real directory tree
with the links and FIFOs an app may plant in its code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conftest import plugin

venv_state = plugin("modules/venv_state.py")


def blog(tmp_path: Path, requirements: str = "requirements.txt") -> dict:
    return {"name": "blog", "requirements": requirements}


@pytest.fixture
def release(tmp_path: Path) -> Path:
    (tmp_path / "release/code").mkdir(parents=True)
    return tmp_path / "release"


def test_the_requirements_digest(tmp_path: Path, release: Path) -> None:
    (release / "code/requirements.txt").write_text("Django==5.2\n")
    found = venv_state.state(blog(tmp_path), {"blog": str(release)})
    assert found == {"requirements": hashlib.sha256(b"Django==5.2\n").hexdigest()}
    assert venv_state.state(blog(tmp_path, requirements=""), {}) == {"requirements": ""}


@pytest.mark.parametrize("plant", ["link", "fifo", "linked_dir"])
def test_root_never_reads_what_a_link_leads_to_nor_a_fifo(tmp_path: Path, release: Path, plant: str) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("not the app's\n")
    path = release / "code/requirements.txt"
    if plant == "link":
        path.symlink_to(secret)
    elif plant == "fifo":
        os.mkfifo(path)  # a read would block the run
    else:
        (release / "code/sub").symlink_to(tmp_path)
        path = release / "code/sub/root-only"
    requirements = str(path.relative_to(release / "code"))
    digest = venv_state.state(blog(tmp_path, requirements), {"blog": str(release)})["requirements"]
    assert digest == hashlib.sha256(b"release " + str(path).encode()).hexdigest()


def test_an_app_with_requirements_and_no_release_fails_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="blog"):
        venv_state.state(blog(tmp_path), {})
