"""pyhost.scgi.app_files, the module that applies many directories and files in one call: its
changes, check mode, diffs and its refusal to follow links, on a real directory tree."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from conftest import plugin

app_files = plugin("modules/app_files.py")

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def directory(path: Path, mode: str = "0750", app: str | None = "blog") -> dict:
    return {"path": str(path), "owner": USER, "group": GROUP, "mode": mode, "app": app}


def file(path: Path, content: str, mode: str = "0640", app: str | None = "blog") -> dict:
    return {"path": str(path), "owner": USER, "group": GROUP, "mode": mode, "app": app, "content": content}


def test_makes_what_is_missing_then_changes_nothing(tmp_path: Path) -> None:
    entries = ([directory(tmp_path / "etc"), directory(tmp_path / "etc/blog", "2750")],
               [file(tmp_path / "etc/blog/app.env", "A=1\n"), file(tmp_path / "etc/blog/sandbox.conf", "x\n", app=None)])

    changed, apps, diffs = app_files.apply(*entries, check_mode=False)

    assert changed == [str(tmp_path / p) for p in ("etc", "etc/blog", "etc/blog/app.env", "etc/blog/sandbox.conf")]
    assert apps == ["blog"]
    assert stat.S_IMODE(os.stat(tmp_path / "etc/blog").st_mode) == 0o2750
    assert (tmp_path / "etc/blog/app.env").read_text() == "A=1\n"
    assert stat.S_IMODE(os.stat(tmp_path / "etc/blog/app.env").st_mode) == 0o640
    assert [d["after"] for d in diffs[2:]] == ["A=1\n", "x\n"]
    assert app_files.apply(*entries, check_mode=False) == ([], [], [])
    assert sorted(os.listdir(tmp_path / "etc/blog")) == ["app.env", "sandbox.conf"]  # no temporary file left


def test_check_mode_reports_the_change_and_makes_nothing(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("A=1\n")
    os.chmod(tmp_path / "app.env", 0o640)
    entries = ([directory(tmp_path / "new")],
               [file(tmp_path / "app.env", "A=2\n"), file(tmp_path / "new/settings.py", "X = 1\n", app="other")])

    changed, apps, diffs = app_files.apply(*entries, check_mode=True)

    assert changed == [str(tmp_path / "new"), str(tmp_path / "app.env"), str(tmp_path / "new/settings.py")]
    assert apps == ["blog", "other"]
    assert (diffs[1]["before"], diffs[1]["after"]) == ("A=1\n", "A=2\n")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "app.env").read_text() == "A=1\n"


def test_a_mode_alone_is_corrected_in_place(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("A=1\n")
    os.chmod(tmp_path / "app.env", 0o644)
    inode = os.stat(tmp_path / "app.env").st_ino

    changed, _apps, diffs = app_files.apply([], [file(tmp_path / "app.env", "A=1\n")], check_mode=False)

    assert changed == [str(tmp_path / "app.env")]
    assert "mode 0644" in diffs[0]["before"] and "mode 0640" in diffs[0]["after"]
    assert stat.S_IMODE(os.stat(tmp_path / "app.env").st_mode) == 0o640
    assert os.stat(tmp_path / "app.env").st_ino == inode


def test_a_link_where_a_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    (tmp_path / "home").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(app_files.Refused, match="is not a directory"):
        app_files.apply([directory(tmp_path / "home", "0711")], [], check_mode=False)
    assert stat.S_IMODE(os.stat(tmp_path / "elsewhere").st_mode) == 0o755


def test_a_link_where_a_file_should_be_is_replaced_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("not yours\n")
    (tmp_path / "app.env").symlink_to(tmp_path / "target")

    changed, _apps, _diffs = app_files.apply([], [file(tmp_path / "app.env", "A=1\n")], check_mode=False)

    assert changed == [str(tmp_path / "app.env")]
    assert not (tmp_path / "app.env").is_symlink()
    assert (tmp_path / "app.env").read_text() == "A=1\n"
    assert (tmp_path / "target").read_text() == "not yours\n"


def test_unknown_users_fail_a_real_run_and_count_as_changes_in_check_mode(tmp_path: Path) -> None:
    entry = {**directory(tmp_path / "x"), "owner": "no-such-user-pyhost"}
    with pytest.raises(app_files.Refused, match="no user named 'no-such-user-pyhost'"):
        app_files.apply([entry], [], check_mode=False)
    (tmp_path / "x").mkdir()
    assert app_files.apply([entry], [], check_mode=True)[0] == [str(tmp_path / "x")]


@pytest.mark.parametrize("mode", ["rwx", "750", "07500", 488, 0o750])
def test_a_mode_that_is_not_four_octal_digits_in_a_string_is_refused(tmp_path: Path, mode) -> None:
    # 488 is what YAML makes of an unquoted 0750: as a string, "488" is no mode, and "750" is not taken
    # for one either.
    (tmp_path / "x").mkdir(mode=0o700)
    with pytest.raises(app_files.Refused, match="is not four octal digits in a string"):
        app_files.apply([{**directory(tmp_path / "x"), "mode": mode}], [], check_mode=False)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700


def run(command: str) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(command, shell=True, check=False, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def test_a_file_that_fails_validation_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "site.conf").write_text("good\n")
    os.chmod(tmp_path / "site.conf", 0o640)
    entry = {**file(tmp_path / "site.conf", "bad\n"), "validate": "grep -q good %s"}

    with pytest.raises(app_files.Refused, match="failed validation"):
        app_files.apply([], [entry], check_mode=False, run_command=run)
    assert (tmp_path / "site.conf").read_text() == "good\n"
    assert os.listdir(tmp_path) == ["site.conf"]
    assert app_files.apply([], [{**entry, "content": "good too\n"}], False, run_command=run)[0] == [entry["path"]]


def test_absent_files_are_removed_and_directories_refused(tmp_path: Path) -> None:
    (tmp_path / "port.nft").write_text("add element\n")
    (tmp_path / "dir").mkdir()

    assert app_files.apply([], [], True, [str(tmp_path / "port.nft")])[0] == [str(tmp_path / "port.nft")]
    assert (tmp_path / "port.nft").exists()
    assert app_files.apply([], [], False, [str(tmp_path / "port.nft"), str(tmp_path / "gone")])[0] == \
        [str(tmp_path / "port.nft")]
    assert not (tmp_path / "port.nft").exists()
    with pytest.raises(app_files.Refused, match="is a directory"):
        app_files.apply([], [], False, [str(tmp_path / "dir")])
