"""pyhost.scgi.venvs, the module that makes, fills and equips each app's virtualenv: which apps each step runs
for, what it runs (as the app, through scgi-run), check mode, and one app's failure leaving the others done, on a
real directory tree. The commands run as the app are recorded here and run for real by Molecule."""

from __future__ import annotations

import os
import pwd
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import plugin

venvs = plugin("modules/venvs.py")

USER = pwd.getpwuid(os.getuid()).pw_name


class Runner:
    """AnsibleModule.run_command's signature: records each argv; `runuser -u USER --` is run as this user, the
    rest answers FAILS' exit status for the commands whose argv holds one of its keys, else 0."""

    def __init__(self, fails: dict[str, int] | None = None) -> None:
        self.argvs: list[list[str]] = []
        self.fails = fails or {}

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.argvs.append(argv)
        if argv[:2] == ["runuser", "-u"]:
            done = subprocess.run(argv[4:], capture_output=True, text=True, check=False)
            return done.returncode, done.stdout, done.stderr
        for key, status in self.fails.items():
            if key in argv:
                return status, "", f"{key} said no"
        return 0, "", ""


def app(tmp_path: Path, name: str, requirements: str = "") -> dict:
    home = tmp_path / name
    (home / "releases/r1/code").mkdir(parents=True, exist_ok=True)
    (home / "venvs").mkdir(exist_ok=True)
    (home / "deploy").mkdir(exist_ok=True)
    return {"name": name, "venvs_dir": str(home / "venvs"), "deploy_dir": str(home / "deploy"),
            "requirements": requirements}


def params(action: str, apps: list[dict], **extra) -> dict:
    return {"action": action, "apps": apps, "pip_wheel": None, "pip_dir": "/opt/pip-25", "launcher": None,
            "releases": {a["name"]: str(Path(a["venvs_dir"]).parent / "releases/r1") for a in apps},
            "venvs": {a["name"]: "v1" for a in apps}, **extra}


def test_create_runs_venv_as_the_app_for_the_missing_virtualenvs_only(tmp_path: Path) -> None:
    blog, shop = app(tmp_path, USER), app(tmp_path, "shop")
    (tmp_path / "shop/venvs/v1/bin").mkdir(parents=True)
    (tmp_path / "shop/venvs/v1/bin/python").symlink_to("/usr/bin/python3")
    run = Runner()
    assert venvs.apply(run, params("create", [blog, shop]), check_mode=True) == ([USER], {})
    assert run.argvs == [] and not (tmp_path / USER / "venvs/v1").exists()
    assert venvs.apply(run, params("create", [blog, shop]), check_mode=False) == ([USER], {})
    venv = f"{blog['venvs_dir']}/v1"
    assert run.argvs == [["/usr/local/sbin/scgi-run", "--release", str(tmp_path / USER / "releases/r1"),
                          "--writable", venv, USER, "python3", "-m", "venv", "--without-pip", venv]]
    assert os.stat(venv).st_uid == os.getuid() and os.stat(venv).st_mode & 0o777 == 0o750


def test_install_runs_pip_with_both_requirement_files_then_closes_the_venv_to_others(tmp_path: Path) -> None:
    blog = app(tmp_path, "blog", requirements="requirements.txt")
    (tmp_path / "blog/releases/r1/code/requirements.txt").write_text("Django\n")
    wiki = app(tmp_path, "wiki", requirements="missing.txt")
    ready = app(tmp_path, "ready")
    (tmp_path / "ready/venvs/v1.ready").write_text("")
    run = Runner()
    assert venvs.apply(run, params("install", [blog, wiki, ready]), check_mode=False) == (["blog", "wiki"], {})
    sandbox = ["/usr/local/sbin/scgi-run", "--release", f"{tmp_path}/blog/releases/r1", "--writable", f"{tmp_path}/blog/venvs/v1"]
    assert run.argvs[0] == [*sandbox, "--network", "blog", f"{tmp_path}/blog/venvs/v1/bin/python", "/opt/pip-25/pip",
                            "install", "--no-input", "--no-cache-dir", "--disable-pip-version-check",
                            f"--requirement={tmp_path}/blog/deploy/requirements.txt",
                            f"--requirement={tmp_path}/blog/releases/r1/code/requirements.txt"]
    assert run.argvs[1] == [*sandbox, "blog", "find", f"{tmp_path}/blog/venvs/v1", "-perm", "/o=rwx", "!", "-type", "l",
                            "-exec", "chmod", "o=", "{}", "+"]
    # A requirements file the release does not have is not given to pip.
    assert run.argvs[2][-1] == f"--requirement={tmp_path}/wiki/deploy/requirements.txt"


def test_one_app_that_fails_is_reported_with_its_reason_and_the_others_are_done(tmp_path: Path) -> None:
    blog, shop, wiki = app(tmp_path, "blog"), app(tmp_path, "shop"), app(tmp_path, "wiki")
    run = Runner(fails={f"{tmp_path}/shop/venvs/v1/bin/python": 1})
    changed, failed = venvs.apply(run, params("install", [blog, shop, wiki]), check_mode=False)
    assert changed == ["blog", "wiki"]
    assert failed == {"shop": f"app shop: pip failed:\n{tmp_path}/shop/venvs/v1/bin/python said no"}


def test_an_app_without_a_release_or_virtualenv_of_this_run_is_left_alone(tmp_path: Path) -> None:
    blog = app(tmp_path, "blog")
    run = Runner()
    assert venvs.apply(run, params("create", [blog], venvs={}), check_mode=False) == ([], {})
    assert venvs.apply(run, params("install", [blog], releases={}), check_mode=False) == ([], {})
    assert run.argvs == []


def test_the_launcher_is_copied_as_the_app_where_it_differs(tmp_path: Path) -> None:
    blog = app(tmp_path, USER)
    (tmp_path / USER / "venvs/v1/bin").mkdir(parents=True)
    staged = tmp_path / "pyhost-scgi-launcher"
    staged.write_bytes(b"launcher 1")
    copy = tmp_path / USER / "venvs/v1/bin/pyhost-scgi-launcher"
    run = Runner()
    assert venvs.apply(run, params("launcher", [blog], launcher=str(staged)), check_mode=True) == ([USER], {})
    assert not copy.exists()
    assert venvs.apply(run, params("launcher", [blog], launcher=str(staged)), check_mode=False) == ([USER], {})
    assert copy.read_bytes() == b"launcher 1" and copy.stat().st_mode & 0o777 == 0o640
    assert all(argv[:4] == ["runuser", "-u", USER, "--"] for argv in run.argvs)
    assert venvs.apply(run, params("launcher", [blog], launcher=str(staged)), check_mode=False) == ([], {})


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "pip-25.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as made:
        made.writestr("pip/__init__.py", "")
        made.writestr("pip/__main__.py", "print('pip')\n")
    return path


def test_stage_pip_unpacks_and_compiles_the_wheel_once_and_removes_older_copies(tmp_path: Path, wheel: Path) -> None:
    (tmp_path / "staged/pip-24.0/pip").mkdir(parents=True)
    target = tmp_path / "staged/pip-25.1-py3-none-any"
    stage = venvs.venvs.stage_pip
    assert stage(str(wheel), str(target), check_mode=True) is True
    assert sorted(os.listdir(tmp_path / "staged")) == ["pip-24.0"]
    assert stage(str(wheel), str(target)) is True
    assert sorted(os.listdir(tmp_path / "staged")) == ["pip-25.1-py3-none-any"]
    assert (target / "pip/__main__.py").read_text() == "print('pip')\n"
    assert any(name.startswith("__main__.") for name in os.listdir(target / "pip/__pycache__"))
    assert stage(str(wheel), str(target)) is False
