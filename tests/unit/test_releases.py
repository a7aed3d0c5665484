"""pyhost.scgi.releases and its module_utils: releases go live whole, the newest are kept, and rollback puts the one
before back; one app that fails leaves the others done."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from ansible_collections.pyhost.scgi.plugins.module_utils import releases as release
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused
from conftest import plugin

module = plugin("modules/releases.py")


def make_release(home: Path, name: str, venv: str = "v1", static: bool = False) -> None:
    """A release as pyhost.scgi.archives and the venv step leave it."""
    (home / "releases" / name / "code").mkdir(parents=True)
    (home / "releases" / name / "code/release.txt").write_text(name)
    if static:
        (home / "releases" / name / "code/public").mkdir()
        (home / "releases" / name / "code/public/site.css").write_text(name)
    (home / "venvs" / venv).mkdir(parents=True, exist_ok=True)
    release.link_venv(str(home), name, venv)


def run(action: str, home: Path, check_mode: bool = False, **params) -> tuple[list[str], dict, dict]:
    """The module's work for the app blog at HOME, as a task calls it."""
    app = {"name": params.pop("user", "blog"), "home": str(home), "releases_dir": str(home / "releases"),
           "static": params.pop("static", {"source": None, "dir": str(home / "static")})}
    arguments = {"action": action, "apps": [app], "releases": {}, "venvs": {}, "keep": 3, "web_group": "www-data"}
    if "release" in params:
        arguments["releases"] = {app["name"]: str(home / "releases" / params.pop("release"))}
    return module.apply({**arguments, **params}, check_mode)


def served(home: Path) -> str:
    return (home / "code/release.txt").read_text()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "blog"
    (home / "releases").mkdir(parents=True)
    (home / "venvs").mkdir()
    return home


def test_activate_swaps_the_links_and_keeps_the_newest_releases_and_their_venvs(home: Path) -> None:
    for number in range(1, 5):
        make_release(home, f"r{number}", venv=f"v{number}")
        assert run("activate", home, check_mode=True, release=f"r{number}") == (["blog"], {}, {})
        assert run("activate", home, release=f"r{number}") == (["blog"], {}, {})
        assert served(home) == f"r{number}"
        assert os.readlink(home / "venv") == "current/venv"
        assert (home / "venv").resolve() == (home / f"venvs/v{number}").resolve()
    assert sorted(os.listdir(home / "releases")) == ["history", "r2", "r3", "r4"]
    assert sorted(os.listdir(home / "venvs")) == ["v2", "v2.ready", "v3", "v3.ready", "v4", "v4.ready"]
    assert (home / "releases/history").read_text() == "r2\nr3\nr4\n"
    # The same release again: nothing to do, nothing written.
    written = (home / "releases/history").stat().st_mtime_ns
    assert run("activate", home, check_mode=True, release="r4") == ([], {}, {})
    assert run("activate", home, release="r4") == ([], {}, {})
    assert (home / "releases/history").stat().st_mtime_ns == written


def test_an_app_without_a_release_of_this_run_is_left_as_it_is(home: Path) -> None:
    make_release(home, "r1")
    assert run("activate", home) == ([], {}, {})
    assert not (home / "current").exists()


def test_link_venv_marks_the_venv_ready_and_says_whether_the_release_changed_venv(home: Path) -> None:
    (home / "releases/r1/code").mkdir(parents=True)
    (home / "venvs/v1").mkdir()
    assert run("link_venv", home, check_mode=True, release="r1", venvs={"blog": "v1"}) == (["blog"], {}, {})
    assert not (home / "venvs/v1.ready").exists()
    assert run("link_venv", home, release="r1", venvs={"blog": "v1"}) == (["blog"], {}, {})
    assert (home / "venvs/v1.ready").is_file()
    assert os.readlink(home / "releases/r1/venv") == "../../venvs/v1"
    assert run("link_venv", home, release="r1", venvs={"blog": "v1"}) == ([], {}, {})
    assert run("link_venv", home, release="r1") == ([], {"blog": "app blog: no virtualenv is named for its release"}, {})


def test_keeping_one_release_keeps_the_one_still_running_until_the_next_deploy(home: Path) -> None:
    for number in (1, 2, 3):
        make_release(home, f"r{number}", venv=f"v{number}")
        release.activate("blog", str(home), f"r{number}", 1)
        assert (home / "releases/history").read_text() == f"r{number}\n"
    # r2's processes run until the restart that follows: r2 and its virtualenv are still there; r1 went.
    assert sorted(os.listdir(home / "releases")) == ["history", "r2", "r3"]
    assert sorted(os.listdir(home / "venvs")) == ["v2", "v2.ready", "v3", "v3.ready"]


def test_rollback_puts_the_release_before_back_and_forgets_the_current_one(home: Path) -> None:
    for number in (1, 2, 3):
        make_release(home, f"r{number}")
        release.activate("blog", str(home), f"r{number}", 3)
    assert run("rollback", home, check_mode=True) == (["blog"], {}, {"blog": "r2"})
    assert served(home) == "r3"
    assert run("rollback", home) == (["blog"], {}, {"blog": "r2"})
    assert served(home) == "r2"
    assert (home / "releases/history").read_text() == "r1\nr2\n"
    # Deployed again, r3 is still there: no unpacking, no pip.
    release.activate("blog", str(home), "r3", 3)
    assert served(home) == "r3"
    assert (home / "releases/history").read_text() == "r1\nr2\nr3\n"
    assert release.rollback("blog", str(home)) == "r2"
    assert release.rollback("blog", str(home)) == "r1"
    assert run("rollback", home) == ([], {"blog": "app blog: no release before the live one (r1) is kept on this host"}, {})
    assert served(home) == "r1"


def test_a_release_whose_venv_is_not_ready_never_goes_live(home: Path) -> None:
    make_release(home, "r1")
    release.activate("blog", str(home), "r1", 3)
    (home / "releases/r2/code").mkdir(parents=True)
    changed, failed, _rolled_back = run("activate", home, release="r2")
    assert changed == [] and "app blog: release r2 has no virtualenv ready" in failed["blog"]
    assert served(home) == "r1"


def test_one_app_that_fails_leaves_the_others_done(tmp_path: Path) -> None:
    homes = {name: tmp_path / name for name in ("blog", "shop", "wiki")}
    for name, home in homes.items():
        (home / "releases").mkdir(parents=True)
        (home / "venvs").mkdir()
        make_release(home, "r1")
    (homes["shop"] / "releases/r1/venv").unlink()
    apps = [{"name": name, "home": str(home), "static": {"source": None}} for name, home in homes.items()]
    changed, failed, _rolled_back = module.apply(
        {"action": "activate", "apps": apps, "releases": {name: f"{home}/releases/r1" for name, home in homes.items()},
         "venvs": {}, "keep": 3, "web_group": "www-data"}, False)
    assert changed == ["blog", "wiki"] and list(failed) == ["shop"]
    assert served(homes["blog"]) == served(homes["wiki"]) == "r1" and not (homes["shop"] / "current").exists()


def test_the_directories_of_the_layout_before_releases_make_way_for_the_links(home: Path) -> None:
    (home / "code").mkdir()
    (home / "code/old.py").write_text("")
    (home / "venv/bin").mkdir(parents=True)
    make_release(home, "r1")
    release.activate("blog", str(home), "r1", 3)
    assert served(home) == "r1"
    assert os.readlink(home / "code") == "current/code"


def test_activate_and_rollback_publish_the_static_files_of_the_release_going_live(home: Path) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    static = {"source": "public", "dir": str(home / "static")}
    for number in (1, 2):
        make_release(home, f"r{number}", static=True)
        assert run("activate", home, user=user, static=static, web_group=group, release=f"r{number}") == ([user], {}, {})
        assert (home / "static/site.css").read_text() == f"r{number}"
    assert run("rollback", home, user=user, static=static, web_group=group) == ([user], {}, {user: "r1"})
    assert (home / "static/site.css").read_text() == "r1"
    for source in ("../..", "public/site.css", "missing"):
        with pytest.raises(Refused, match=f"static.source '{source}' is not a directory inside"):
            release.publish_static(user, str(home / "releases/r1/code"), release.Static(source, str(home / "static"), group))


def test_root_writes_the_history_and_ready_marks_through_no_link_planted_in_their_place(home: Path, tmp_path: Path) -> None:
    """The app can change nothing in releases/ or venvs/. Had it a way in (a media dir named releases was one), a
    link planted as history.new or VENV.ready is replaced, and root's lines never reach its target."""
    target = tmp_path / "ld.so.preload"
    target.write_text("untouched\n")
    (home / "releases/history.new").symlink_to(target)
    (home / "venvs/v1.ready").symlink_to(target)
    make_release(home, "r1")
    assert run("activate", home, release="r1") == (["blog"], {}, {})
    assert target.read_text() == "untouched\n"
    assert (home / "releases/history").read_text() == "r1\n"
    assert not (home / "venvs/v1.ready").is_symlink() and (home / "venvs/v1.ready").is_file()
    (home / "releases/history").unlink()
    (home / "releases/history").symlink_to(target)
    with pytest.raises(OSError):
        release.read_history(str(home))
