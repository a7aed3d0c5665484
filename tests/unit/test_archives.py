"""pyhost.scgi.archives and its module_utils: what comes out of an app's archive, which may be hostile, and the
static files a worker packs as the app for a front end."""

from __future__ import annotations

import io
import grp
import os
import pwd
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from ansible_collections.pyhost.scgi.plugins.module_utils import archives as unpack
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused
from conftest import plugin

module = plugin("modules/archives.py")
GROUP = grp.getgrgid(os.getgid()).gr_name
USER = pwd.getpwuid(os.getuid()).pw_name


def run_command(argv: list[str]) -> tuple[int, str, str]:
    """AnsibleModule.run_command, as the module is given it."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def apply(action: str, apps: list[dict], **params) -> tuple[list[str], dict]:
    return module.apply(run_command, {"action": action, "apps": apps, "releases": {}, "commits": {},
                                      "web_group": GROUP, "max_size": 1 << 30, **params}, False)


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def archive(tmp_path: Path, *members, name: str = "code.tar.gz") -> str:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, data)
    return str(path)


def test_files_dirs_and_in_tree_links_come_out_root_owned_readable_by_the_group(tmp_path):
    path = archive(
        tmp_path,
        member("./app", tarfile.DIRTYPE),
        member("./app/wsgi.py", data=b"application = None\n"),
        member("./bin/run", data=b"#!/bin/sh\n", mode=0o755),
        member("./app/current", tarfile.SYMTYPE, link="wsgi.py"),
        member("./top", tarfile.SYMTYPE, link="app/../bin"),
    )
    target = tmp_path / "code.new"
    unpack.extract(path, str(target))
    unpack.hand_over(str(target), os.getgid())
    assert (target / "app/wsgi.py").read_bytes() == b"application = None\n"
    assert os.readlink(target / "app/current") == "wsgi.py"
    assert os.readlink(target / "top") == "app/../bin"
    modes = {name: stat.S_IMODE(os.stat(target / name).st_mode) for name in ("", "app", "app/wsgi.py", "bin/run")}
    assert modes == {"": 0o750, "app": 0o750, "app/wsgi.py": 0o640, "bin/run": 0o750}


@pytest.mark.parametrize(
    ("members", "refused"),
    [
        ([member("dev/sda", tarfile.BLKTYPE)], "'dev/sda': a device node"),
        ([member("tty", tarfile.CHRTYPE)], "'tty': a device node"),
        ([member("pipe", tarfile.FIFOTYPE)], "'pipe': a FIFO"),
        ([member("a"), member("b", tarfile.LNKTYPE, link="/etc/shadow")], "'b': a hard link"),
        ([member("/etc/cron.d/x")], "'/etc/cron.d/x': a path outside the code"),
        ([member("../../etc/cron.d/x")], "'../../etc/cron.d/x': a path outside the code"),
        ([member("a/../../x")], "'a/../../x': a path outside the code"),
        ([member("shadow", tarfile.SYMTYPE, link="/etc/shadow")], "'shadow': a symbolic link to '/etc/shadow', outside"),
        ([member("up", tarfile.SYMTYPE, link="../..")], "'up': a symbolic link to '../..', outside"),
        ([member("d/l", tarfile.SYMTYPE, link=".."), member("d/l/l2", tarfile.SYMTYPE, link="..")],
         "'d/l/l2': a path through a symbolic link"),
        ([member("etc", tarfile.SYMTYPE, link="."), member("etc/cron.d/x")], "'etc/cron.d/x': a path through a"),
        ([member("a"), member("./a", tarfile.SYMTYPE, link="b")], "'./a': in the archive twice"),
        # Kernel resolution: d/l is the code's root, so d/l/.. is the app's home and req reaches its venv.
        ([member("d/l", tarfile.SYMTYPE, link=".."), member("req", tarfile.SYMTYPE, link="d/l/../venv/x")],
         "'req': a symbolic link to 'd/l/../venv/x', through the link 'd/l'"),
        # The same with the links in the other order: checked against every link of the archive.
        ([member("req", tarfile.SYMTYPE, link="d/l/../venv/x"), member("d/l", tarfile.SYMTYPE, link="..")],
         "'req': a symbolic link to 'd/l/../venv/x', through the link 'd/l'"),
        ([member("d/x"), member("d", tarfile.SYMTYPE, link=".")], "'d/x': a path through a symbolic link"),
        ([member("empty", tarfile.SYMTYPE, link="")], "'empty': a symbolic link to '', outside"),
    ],
    ids=["block device", "char device", "fifo", "hard link", "absolute", "dotdot", "dotdot inside", "abs link",
         "escaping link", "link through link", "file through link", "twice", "target through link",
         "target through a later link", "file before its parent link", "empty link"],
)
def test_hostile_members_are_refused_before_anything_is_written(tmp_path, members, refused):
    path = archive(tmp_path, member("ok.py"), *members)
    target = tmp_path / "code.new"
    with pytest.raises(Refused) as error:
        unpack.extract(path, str(target))
    assert refused in str(error.value)
    assert list(target.iterdir()) == []


def test_a_refused_archive_fails_its_app_naming_the_member_and_the_others_unpack(tmp_path, main_umask):
    # The good app is named after the test's own group, which reads its code.
    names = ("blog", GROUP, "wiki")
    for name in names:
        (tmp_path / name / "releases").mkdir(parents=True)
    archive(tmp_path / "blog", member("disk", tarfile.BLKTYPE), name="code.tar")
    archive(tmp_path / GROUP, member("wsgi.py"), name="code.tar")
    apps = [{"name": name, "deploy_dir": str(tmp_path / name)} for name in names]
    # wiki has no release of this run: left alone.
    changed, failed = apply("unpack_code", apps, releases={name: str(tmp_path / name / "releases/0123") for name in names[:2]})
    assert changed == [GROUP] and (tmp_path / GROUP / "releases/0123/code/wsgi.py").exists()
    assert failed == {"blog": "app blog: the code archive is refused: 'disk': a device node "
                              "(only files, directories and links inside the code)"}
    assert not (tmp_path / "blog/releases/0123/code").exists()


def test_code_that_does_not_compile_fails_its_app_alone(tmp_path, main_umask):
    for name in ("blog", GROUP):
        (tmp_path / name / "releases").mkdir(parents=True)
    archive(tmp_path / "blog", member("wsgi.py", data=b"print 'python 2'\n"), name="code.tar")
    archive(tmp_path / GROUP, member("wsgi.py", data=b"application = None\n"), name="code.tar")
    apps = [{"name": name, "deploy_dir": str(tmp_path / name)} for name in ("blog", GROUP)]
    changed, failed = apply("unpack_code", apps, releases={name: str(tmp_path / name / "releases/0123") for name in ("blog", GROUP)})
    assert changed == [GROUP]
    assert failed["blog"].startswith("app blog: the code archive is refused: its Python does not compile: ")
    assert "SyntaxError" in failed["blog"]
    assert not (tmp_path / "blog/releases/0123/code").exists()


@pytest.fixture
def main_umask():
    """The umask main sets."""
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_a_release_is_unpacked_once_whole_and_compiled(tmp_path, main_umask):
    path = archive(tmp_path, member("./app/wsgi.py", data=b"application = None\n"))
    (tmp_path / "home/releases").mkdir(parents=True)
    code = tmp_path / "home/releases/0123/code"
    assert unpack.unpack_release(path, str(code), GROUP, check_mode=True) is True
    assert not code.parent.exists()
    assert unpack.unpack_release(path, str(code), GROUP) is True
    assert (code / "app/wsgi.py").read_bytes() == b"application = None\n"
    assert list((code / "app/__pycache__").iterdir())
    assert stat.S_IMODE(os.stat(code.parent).st_mode) == 0o711
    assert not (code.parent / "code.new").exists()
    # A release that is there stays as it is: its processes may be running on it.
    (code / "app/wsgi.py").chmod(0o600)
    assert unpack.unpack_release(path, str(code), GROUP) is False
    assert stat.S_IMODE(os.stat(code / "app/wsgi.py").st_mode) == 0o600


def test_a_workers_static_files_come_out_on_a_front_end_readable_by_apache_and_uncompiled(tmp_path, main_umask):
    """A front end that does not run the app gets the static files a worker collected."""
    archive(tmp_path, member("./css/site.css", data=b"body{}"), member("./js/app.py", data=b"x = 1\n"), name="static.tar")
    target = tmp_path / "static"
    blog = {"name": "blog", "deploy_dir": str(tmp_path), "static": {"dir": str(target)}}
    assert module.apply(run_command, {"action": "unpack_static", "apps": [blog], "web_group": GROUP}, True) == (["blog"], {})
    assert not target.exists()
    assert apply("unpack_static", [blog]) == (["blog"], {})
    assert (target / "css/site.css").read_bytes() == b"body{}"
    assert not (target / "js/__pycache__").exists()
    assert stat.S_IMODE(os.stat(target / "css/site.css").st_mode) == 0o640
    assert apply("unpack_static", [blog]) == ([], {})  # the stamp: unchanged


def test_a_hostile_static_archive_is_refused_naming_the_app(tmp_path):
    archive(tmp_path, member("shadow", tarfile.SYMTYPE, link="/etc/shadow"), name="static.tar")
    blog = {"name": "blog", "deploy_dir": str(tmp_path), "static": {"dir": str(tmp_path / "static")}}
    changed, failed = apply("unpack_static", [blog])
    assert changed == [] and failed["blog"].startswith("app blog: the static archive is refused: 'shadow'")
    assert not (tmp_path / "static").exists()


def test_static_files_are_packed_as_the_app_once_and_refused_over_the_size(tmp_path, main_umask):
    (tmp_path / "static/css").mkdir(parents=True)
    (tmp_path / "static/css/site.css").write_text("body{}")
    (tmp_path / "deploy").mkdir()
    blog = {"name": USER, "deploy_dir": str(tmp_path / "deploy"), "static": {"dir": str(tmp_path / "static")}}
    assert apply("pack_static", [blog]) == ([USER], {})
    with tarfile.open(tmp_path / "deploy/static.tar") as packed:
        assert sorted(packed.getnames()) == [".", "./css", "./css/site.css"]
        assert {(info.uid, info.gid) for info in packed.getmembers()} == {(0, 0)}
    assert stat.S_IMODE(os.stat(tmp_path / "deploy/static.tar").st_mode) == 0o600
    assert apply("pack_static", [blog]) == ([], {})
    assert apply("pack_static", [blog], max_size=5) == ([], {
        USER: f"app {USER}: its static files take {4096 * 2 + 6} bytes, more than "
              "scgi_site_static_max_size (5)"})


def test_a_release_records_the_commit_the_run_names_and_never_the_archives_own(tmp_path, main_umask):
    """The run names the commit it archived from a git source: the status shows it. `git archive` also names it
    in the archive's pax header, which any archive can carry: that one is never taken."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "wsgi.py").write_text("application = None\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@invalid"]
    for command in (["init", "--quiet"], ["add", "wsgi.py"], ["commit", "--quiet", "-m", "one"]):
        subprocess.run([*git, *command], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*git, "archive", "--format=tar", f"--output={tmp_path / 'code.tar'}", commit], check=True)
    group = grp.getgrgid(os.getgid()).gr_name
    (tmp_path / "home/releases").mkdir(parents=True)
    code = tmp_path / "home/releases/0123/code"
    assert unpack.unpack_release(str(tmp_path / "code.tar"), str(code), group, commit) is True
    assert (code.parent / "commit").read_text() == commit + "\n"
    assert (code / "wsgi.py").exists()
    # The same archive as a plain archive source: its pax comment is no commit of a release.
    plain = tmp_path / "home/releases/4567/code"
    assert unpack.unpack_release(str(tmp_path / "code.tar"), str(plain), group) is True
    assert not (plain.parent / "commit").exists()
    with pytest.raises(Refused, match="is not a commit id"):
        unpack.unpack_release(str(tmp_path / "code.tar"), str(tmp_path / "home/releases/89ab/code"), group, "HEAD")
