"""pyhost.scgi.code_archives, the action that makes each app's code archive on the controller: a tenant's
repository is archived with none of the operator's git configuration, one app's failure is its own, and an
unchanged source directory packs into the same archive."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import plugin

git_archive = plugin("action/code_archives.py")


@pytest.fixture
def operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's home, whose git configuration has a filter for every file, a hook directory and a
    credential helper; the marker file says whether the filter or a hook ran."""
    home = tmp_path / "operator"
    hooks = home / "hooks"
    hooks.mkdir(parents=True)
    marker = tmp_path / "ran"
    for hook in ("post-checkout", "reference-transaction", "post-index-change"):
        (hooks / hook).write_text(f"#!/bin/sh\necho hook >> {marker}\n")
        (hooks / hook).chmod(0o755)
    (home / "smudge").write_text(f"#!/bin/sh\necho filter >> {marker}\nexec cat\n")
    (home / "smudge").chmod(0o755)
    (home / ".gitconfig").write_text(
        f"[filter \"evil\"]\n\tsmudge = {home / 'smudge'}\n\tclean = cat\n"
        f"[core]\n\thooksPath = {hooks}\n"
        "[credential]\n\thelper = store --file=/nonexistent/operator-credentials\n")
    monkeypatch.setenv("HOME", str(home))
    for name in [name for name in os.environ if name.startswith("GIT_")]:
        monkeypatch.delenv(name)
    return marker


def tenant_repository(tmp_path: Path) -> Path:
    """A repository whose .gitattributes asks for the operator's filter on every file."""
    repo = tmp_path / "tenant"
    repo.mkdir()
    (repo / ".gitattributes").write_text("* filter=evil\n")
    (repo / "wsgi.py").write_text("application = None\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@invalid", "-c", "core.hooksPath=/dev/null"]
    for command in (["init", "--quiet", "--initial-branch=main"], ["add", "."], ["commit", "--quiet", "-m", "one"]):
        subprocess.run([*git, *command], check=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    return repo


def test_a_tenants_repository_runs_no_filter_or_hook_of_the_operator_and_keeps_the_credential_helpers(
        operator: Path, tmp_path: Path) -> None:
    repo = tenant_repository(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # The operator's configuration would run the tenant's filter: the point of the test.
    subprocess.run(["git", "clone", "--quiet", str(repo), str(tmp_path / "plain")], check=True)
    assert "filter" in operator.read_text() and "hook" in operator.read_text()
    operator.unlink()

    commits, failed = git_archive.git_archives(str(scratch), {"blog": (str(repo), "main")}, os.environ)
    assert list(commits) == ["blog"] and len(commits["blog"]) == 40 and failed == {}
    with tarfile.open(scratch / "git-blog.tar") as tar:
        assert tar.extractfile("wsgi.py").read() == b"application = None\n"
    assert not operator.exists()
    env = git_archive.git_environment(os.environ)
    assert (env["GIT_CONFIG_GLOBAL"], env["GIT_CONFIG_NOSYSTEM"]) == (os.devnull, "1")
    settings = {(env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"]) for n in range(int(env["GIT_CONFIG_COUNT"]))}
    assert settings == {("core.hooksPath", os.devnull),
                        ("credential.helper", "store --file=/nonexistent/operator-credentials")}
    assert env["GIT_SSH_COMMAND"].startswith("ssh -o ConnectTimeout=30")


def test_each_apps_failure_is_its_own(operator: Path, tmp_path: Path) -> None:
    repo = tenant_repository(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sources = {"gone": (str(tmp_path / "nowhere"), "main"), "nobranch": (str(repo), "deleted"),
               "blog": (str(repo), "main"), "hostile": ("ext::sh -c touch% /tmp/pwned", "main")}
    commits, failed = git_archive.git_archives(str(scratch), sources, os.environ)
    assert list(commits) == ["blog"] and list(failed) == ["gone", "nobranch", "hostile"]
    assert failed["gone"].startswith(f"app gone: git could not clone {tmp_path / 'nowhere'} (source.git.repo)")
    assert failed["nobranch"] == f"scgi_apps: app 'nobranch', field 'source.git.version': deleted is not a branch, tag or commit of {repo}"
    assert not Path("/tmp/pwned").exists()


def test_an_unchanged_source_directory_packs_into_the_same_archive_without_vcs_or_bytecode(tmp_path: Path) -> None:
    source = tmp_path / "blog"
    for path in ("wsgi.py", ".git/HEAD", "__pycache__/wsgi.cpython-311.pyc", "old.pyc", "pkg/mod.py"):
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "given.tar").write_bytes(b"an archive source, taken as it is")
    apps = [{"name": "blog", "source": {"kind": "path", "controller_path": str(source)}},
            {"name": "shop", "source": {"kind": "archive", "controller_path": str(scratch / "given.tar")}}]
    first = git_archive.pack(str(scratch), "web1", apps)
    assert first["blog"]["archive"] == str(scratch / "web1-blog.tar") and first["blog"]["release"] == first["blog"]["sha256"][:16]
    with tarfile.open(scratch / "web1-blog.tar") as packed:
        assert sorted(packed.getnames()) == [".", "./pkg", "./pkg/mod.py", "./wsgi.py"]
        assert {(member.uid, member.gid, member.uname) for member in packed.getmembers()} == {(0, 0, "")}
    assert first["shop"]["archive"] == str(scratch / "given.tar")
    assert git_archive.pack(str(scratch), "web1", apps) == first
