"""pyhost-scgi-git-archive: a tenant's repository is archived with none of the operator's git configuration."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "roles/scgi_worker/files/pyhost-scgi-git-archive"
_LOADER = importlib.machinery.SourceFileLoader("pyhost_scgi_git_archive", str(_PATH))
_SPEC = importlib.util.spec_from_loader("pyhost_scgi_git_archive", _LOADER)
git_archive = importlib.util.module_from_spec(_SPEC)
_LOADER.exec_module(git_archive)


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
        operator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tenant_repository(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # The operator's configuration would run the tenant's filter: the point of the test.
    subprocess.run(["git", "clone", "--quiet", str(repo), str(tmp_path / "plain")], check=True)
    assert "filter" in operator.read_text() and "hook" in operator.read_text()
    operator.unlink()

    assert git_archive.main([str(scratch), "blog", str(repo), "main"]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "blog" and len(out[1]) == 40
    with tarfile.open(scratch / "git-blog.tar") as tar:
        assert tar.extractfile("wsgi.py").read() == b"application = None\n"
    assert not operator.exists()
    env = git_archive.git_environment(os.environ)
    assert (env["GIT_CONFIG_GLOBAL"], env["GIT_CONFIG_NOSYSTEM"]) == (os.devnull, "1")
    settings = {(env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"]) for n in range(int(env["GIT_CONFIG_COUNT"]))}
    assert settings == {("core.hooksPath", os.devnull),
                        ("credential.helper", "store --file=/nonexistent/operator-credentials")}
    assert env["GIT_SSH_COMMAND"].startswith("ssh -o ConnectTimeout=30")


def test_each_apps_failure_is_its_own(operator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tenant_repository(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert git_archive.main([str(scratch), "gone", str(tmp_path / "nowhere"), "main",
                             "nobranch", str(repo), "deleted", "blog", str(repo), "main",
                             "hostile", "ext::sh -c touch% /tmp/pwned", "main"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[:2] == ["failed gone", "failed nobranch"] and lines[2].startswith("blog ") and lines[3] == "failed hostile"
    assert f"app gone: git could not clone {tmp_path / 'nowhere'} (source.git.repo)" in captured.err
    assert f"scgi_apps: app 'nobranch', field 'source.git.version': deleted is not a branch, tag or commit of {repo}" in captured.err
    assert not Path("/tmp/pwned").exists()


def test_the_command_line_says_what_it_takes() -> None:
    shown = subprocess.run([str(_PATH), "--help"], capture_output=True, text=True, check=True)
    assert "SCRATCH [APP REPOSITORY VERSION ...]" in shown.stdout and "credential helpers" in shown.stdout
    refused = subprocess.run([str(_PATH), "/tmp", "blog", "repo"], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "each app takes three arguments" in refused.stderr
