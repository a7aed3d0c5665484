"""pyhost-scgi-release: releases go live whole, the newest are kept, and rollback puts the one before back."""

from __future__ import annotations

import grp
import importlib.machinery
import importlib.util
import os
import pwd
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "roles/scgi_worker/files/pyhost-scgi-release"
_LOADER = importlib.machinery.SourceFileLoader("pyhost_scgi_release", str(_PATH))
_SPEC = importlib.util.spec_from_loader("pyhost_scgi_release", _LOADER)
release = importlib.util.module_from_spec(_SPEC)
_LOADER.exec_module(release)


def make_release(home: Path, name: str, venv: str = "v1", static: bool = False) -> None:
    """A release as pyhost-scgi-unpack and the venv step leave it."""
    (home / "releases" / name / "code").mkdir(parents=True)
    (home / "releases" / name / "code/release.txt").write_text(name)
    if static:
        (home / "releases" / name / "code/public").mkdir()
        (home / "releases" / name / "code/public/site.css").write_text(name)
    (home / "venvs" / venv).mkdir(parents=True, exist_ok=True)
    assert release.venv(str(home), name, venv) in ("changed", "unchanged")


def served(home: Path) -> str:
    return (home / "code/release.txt").read_text()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "blog"
    (home / "releases").mkdir(parents=True)
    (home / "venvs").mkdir()
    return home


def test_activate_swaps_the_links_and_keeps_the_newest_releases_and_their_venvs(home: Path, capsys) -> None:
    for number in range(1, 5):
        make_release(home, f"r{number}", venv=f"v{number}")
        assert release.main(["activate", "blog", str(home), f"r{number}", "3"]) == 0
        assert capsys.readouterr().out == "changed\n"
        assert served(home) == f"r{number}"
        assert os.readlink(home / "venv") == "current/venv"
        assert (home / "venv").resolve() == (home / f"venvs/v{number}").resolve()
    assert sorted(os.listdir(home / "releases")) == ["history", "r2", "r3", "r4"]
    assert sorted(os.listdir(home / "venvs")) == ["v2", "v2.ready", "v3", "v3.ready", "v4", "v4.ready"]
    assert (home / "releases/history").read_text() == "r2\nr3\nr4\n"
    # The same release again: nothing to do, nothing written.
    written = (home / "releases/history").stat().st_mtime_ns
    assert release.main(["activate", "blog", str(home), "r4", "3"]) == 0
    assert capsys.readouterr().out == "unchanged\n"
    assert (home / "releases/history").stat().st_mtime_ns == written


def test_keeping_one_release_keeps_the_one_still_running_until_the_next_deploy(home: Path) -> None:
    for number in (1, 2, 3):
        make_release(home, f"r{number}", venv=f"v{number}")
        release.activate("blog", str(home), f"r{number}", 1, [])
        assert (home / "releases/history").read_text() == f"r{number}\n"
    # r2's processes run until the restart that follows: r2 and its virtualenv are still there; r1 went.
    assert sorted(os.listdir(home / "releases")) == ["history", "r2", "r3"]
    assert sorted(os.listdir(home / "venvs")) == ["v2", "v2.ready", "v3", "v3.ready"]


def test_rollback_puts_the_release_before_back_and_forgets_the_current_one(home: Path, capsys) -> None:
    for number in (1, 2, 3):
        make_release(home, f"r{number}")
        release.activate("blog", str(home), f"r{number}", 3, [])
    assert release.main(["rollback", "--check", "blog", str(home)]) == 0
    assert capsys.readouterr().out == "changed r2\n"
    assert served(home) == "r3"
    assert release.main(["rollback", "blog", str(home)]) == 0
    assert capsys.readouterr().out == "changed r2\n"
    assert served(home) == "r2"
    assert (home / "releases/history").read_text() == "r1\nr2\n"
    # Deployed again, r3 is still there: no unpacking, no pip.
    release.activate("blog", str(home), "r3", 3, [])
    assert served(home) == "r3"
    assert (home / "releases/history").read_text() == "r1\nr2\nr3\n"
    assert release.rollback("blog", str(home), [], False) == "changed r2"
    assert release.rollback("blog", str(home), [], False) == "changed r1"
    assert release.main(["rollback", "blog", str(home)]) == 1
    assert "app blog: no release before the live one (r1) is kept on this host" in capsys.readouterr().err
    assert served(home) == "r1"


def test_a_release_whose_venv_is_not_ready_never_goes_live(home: Path, capsys) -> None:
    make_release(home, "r1")
    release.activate("blog", str(home), "r1", 3, [])
    (home / "releases/r2/code").mkdir(parents=True)
    assert release.main(["activate", "blog", str(home), "r2", "3"]) == 1
    assert "app blog: release r2 has no virtualenv ready" in capsys.readouterr().err
    assert served(home) == "r1"


def test_the_directories_of_the_layout_before_releases_make_way_for_the_links(home: Path) -> None:
    (home / "code").mkdir()
    (home / "code/old.py").write_text("")
    (home / "venv/bin").mkdir(parents=True)
    make_release(home, "r1")
    release.activate("blog", str(home), "r1", 3, [])
    assert served(home) == "r1"
    assert os.readlink(home / "code") == "current/code"


def test_activate_and_rollback_publish_the_static_files_of_the_release_going_live(home: Path) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    static = ["public", str(home / "static"), group]
    for number in (1, 2):
        make_release(home, f"r{number}", static=True)
        release.activate(user, str(home), f"r{number}", 3, static)
        assert (home / "static/site.css").read_text() == f"r{number}"
    release.rollback(user, str(home), static, False)
    assert (home / "static/site.css").read_text() == "r1"
    for source in ("../..", "public/site.css", "missing"):
        with pytest.raises(release.ReleaseError, match=f"static.source '{source}' is not a directory inside"):
            release.publish_static(user, str(home / "releases/r1/code"), source, str(home / "static"), group)


def test_root_writes_the_history_and_ready_marks_through_no_link_planted_in_their_place(home: Path, tmp_path: Path) -> None:
    """The app can change nothing in releases/ or venvs/. Had it a way in (a media dir named releases was one), a
    link planted as history.new or VENV.ready is replaced, and root's lines never reach its target."""
    target = tmp_path / "ld.so.preload"
    target.write_text("untouched\n")
    (home / "releases/history.new").symlink_to(target)
    (home / "venvs/v1.ready").symlink_to(target)
    make_release(home, "r1")
    assert release.main(["activate", "blog", str(home), "r1", "3"]) == 0
    assert target.read_text() == "untouched\n"
    assert (home / "releases/history").read_text() == "r1\n"
    assert not (home / "venvs/v1.ready").is_symlink() and (home / "venvs/v1.ready").is_file()
    (home / "releases/history").unlink()
    (home / "releases/history").symlink_to(target)
    with pytest.raises(OSError):
        release.read_history(str(home))
