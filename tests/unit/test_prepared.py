"""pyhost.scgi.prepared, the module that reads what each Django app's deploy-time steps depend on and what they
last succeeded with, on a real directory tree."""

from __future__ import annotations

from pathlib import Path

from conftest import plugin

prepared = plugin("modules/prepared.py")


def blog(tmp_path: Path, migrate: bool = True) -> dict:
    return {"name": "blog", "config_dir": str(tmp_path / "etc"), "deploy_dir": str(tmp_path / "deploy"),
            "home": str(tmp_path / "home"), "django": {"migrate": migrate, "collectstatic": True}}


def test_the_inputs_follow_the_release_its_virtualenv_the_steps_and_the_configuration(tmp_path: Path) -> None:
    for directory in ("etc", "deploy", "home/releases/r1", "home/releases/r2", "home/venvs/v1", "home/venvs/v2"):
        (tmp_path / directory).mkdir(parents=True)
    (tmp_path / "etc/app.env").write_text("A=1\n")
    (tmp_path / "home/releases/r1/venv").symlink_to(tmp_path / "home/venvs/v1")
    (tmp_path / "home/current").symlink_to(tmp_path / "home/releases/r1")

    live = prepared.states([blog(tmp_path)], {})["blog"]
    assert live == {"inputs": live["inputs"], "prepared": ""}  # never prepared
    # The live release when the run has none of its own, as named by its release directory.
    assert prepared.states([blog(tmp_path)], {"blog": str(tmp_path / "home/releases/r1")})["blog"] == live
    seen = {live["inputs"]}
    (tmp_path / "home/releases/r2/venv").symlink_to(tmp_path / "home/venvs/v1")
    seen.add(prepared.states([blog(tmp_path)], {"blog": str(tmp_path / "home/releases/r2")})["blog"]["inputs"])
    (tmp_path / "home/releases/r2/venv").unlink()
    (tmp_path / "home/releases/r2/venv").symlink_to(tmp_path / "home/venvs/v2")
    seen.add(prepared.states([blog(tmp_path)], {"blog": str(tmp_path / "home/releases/r2")})["blog"]["inputs"])
    seen.add(prepared.states([blog(tmp_path, migrate=False)], {})["blog"]["inputs"])
    (tmp_path / "etc/secret.env").write_text("TOKEN=x\n")
    seen.add(prepared.states([blog(tmp_path)], {})["blog"]["inputs"])
    assert len(seen) == 5
    assert "TOKEN" not in str(prepared.states([blog(tmp_path)], {}))  # only digests


def test_the_stamp_of_the_last_success_is_read(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy/prepared").write_text("abc123\n")
    assert prepared.states([blog(tmp_path)], {})["blog"]["prepared"] == "abc123"
