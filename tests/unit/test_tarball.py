"""The collection as users get it: the tarball of `ansible-galaxy collection build` holds everything the roles
need and nothing of the development tree, and installed from it the collection's playbooks and docs resolve."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Everything under these ships, as it is in git.
SHIPPED_TREES = ["roles", "plugins", "playbooks", "meta"]
SHIPPED_FILES = {"README.md", "LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "MANIFEST.json", "FILES.json"}
DEVELOPMENT_TOP = {"collections", "inventory", "molecule", "tests", "bench", "scripts", "changelogs/fragments",
                   "ansible.cfg", "site.yml", "rollback.yml", "Makefile", "requirements-dev.txt", "galaxy.yml"}


def run(*argv: str, **env: str) -> str:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(ROOT))
    (built,) = out.glob("pyhost-scgi-*.tar.gz")
    return built


def test_the_tarball_holds_every_file_of_the_roles_plugins_playbooks_and_meta(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        members = {member.name for member in archive.getmembers() if member.isfile()}
    tracked = set(run("git", "ls-files", "--", *SHIPPED_TREES).split())
    assert tracked, "git ls-files found nothing: not a checkout?"
    assert tracked - members == set()
    assert SHIPPED_FILES - members == set()
    # The launcher's package, the modules' shared code and the filter's docs among them.
    assert {"roles/scgi_worker/files/launcher/pyhost_scgi_launcher/pools.py",
            "plugins/module_utils/archives.py", "plugins/module_utils/releases.py",
            "roles/scgi_worker/templates/scgi-run.j2", "plugins/filter/scgi_apps.py",
            "plugins/filter/scgi_apps.yml"} <= members


def test_the_tarball_holds_nothing_of_the_development_tree(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    development = [name for name in names
                   if name.startswith(".") or "__pycache__" in name.split("/") or name.endswith((".pyc", ".tar.gz"))
                   or any(name == top or name.startswith(top + "/") for top in DEVELOPMENT_TOP)]
    assert development == []


def test_installed_from_the_tarball_its_playbooks_and_docs_resolve(tarball: Path, tmp_path: Path) -> None:
    installed = tmp_path / "collections"
    # Only this path: the checkout's collections/ link holds the same name and version, and would be
    # taken for it (nothing installed, "already installed").
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed)}
    run(str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(installed), str(tarball), **env)
    assert (installed / "ansible_collections/pyhost/scgi/MANIFEST.json").is_file()
    listed = run(str(BIN / "ansible-galaxy"), "collection", "list", "pyhost.scgi", **env)
    assert f"# {installed / 'ansible_collections'}" in listed
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    scgi_frontends:\n      hosts: {web1: }\n"
                         "    scgi_workers:\n      hosts: {web1: }\n", encoding="utf-8")
    for playbook in ("pyhost.scgi.site", "pyhost.scgi.rollback", "pyhost.scgi.check"):
        run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), playbook, **env)
    assert "scgi_apps" in run(str(BIN / "ansible-doc"), "-t", "role", "pyhost.scgi.scgi_worker", **env)
    assert "scgi_apps" in run(str(BIN / "ansible-doc"), "-t", "filter", "pyhost.scgi.scgi_apps", **env)
