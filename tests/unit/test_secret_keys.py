"""pyhost.scgi.secret_keys, the module that makes each Django app's SECRET_KEY once: made, kept, check mode and
its refusals, on a real directory tree."""

from __future__ import annotations

import grp
import os
import re
import stat
from pathlib import Path

import pytest

from conftest import plugin

secret_keys = plugin("modules/secret_keys.py")

GROUP = grp.getgrgid(os.getgid()).gr_name


def test_makes_each_missing_key_once_and_keeps_it(tmp_path: Path) -> None:
    blog, shop = tmp_path / "blog.env", tmp_path / "shop.env"
    keys = [{"path": str(blog), "group": GROUP}, {"path": str(shop), "group": GROUP}]

    assert secret_keys.apply(keys, check_mode=False) == [str(blog), str(shop)]

    made = blog.read_text()
    assert re.fullmatch(r"DJANGO_SECRET_KEY=[A-Za-z0-9_-]{60,}\n", made)
    assert made != shop.read_text()
    assert stat.S_IMODE(blog.stat().st_mode) == 0o640 and blog.stat().st_gid == os.getgid()
    assert secret_keys.apply(keys, check_mode=False) == []
    assert blog.read_text() == made
    assert sorted(os.listdir(tmp_path)) == ["blog.env", "shop.env"]  # no temporary file left


def test_check_mode_reports_and_makes_nothing(tmp_path: Path) -> None:
    (tmp_path / "kept.env").write_text("DJANGO_SECRET_KEY=old\n")
    keys = [{"path": str(tmp_path / "kept.env"), "group": GROUP}, {"path": str(tmp_path / "new.env"), "group": GROUP}]
    assert secret_keys.apply(keys, check_mode=True) == [str(tmp_path / "new.env")]
    assert os.listdir(tmp_path) == ["kept.env"]


def test_a_link_in_its_place_is_refused_before_any_key_is_made(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x\n")
    (tmp_path / "planted.env").symlink_to(target)
    keys = [{"path": str(tmp_path / "first.env"), "group": GROUP}, {"path": str(tmp_path / "planted.env"), "group": GROUP}]
    with pytest.raises(secret_keys.Refused, match="is not a regular file"):
        secret_keys.apply(keys, check_mode=False)
    assert target.read_text() == "x\n"
    assert not (tmp_path / "first.env").exists()


def test_an_unknown_group_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(secret_keys.Refused, match="no group 'no-such-group-here'"):
        secret_keys.apply([{"path": str(tmp_path / "blog.env"), "group": "no-such-group-here"}], check_mode=False)
    assert os.listdir(tmp_path) == []
