"""pyhost.scgi.mount_points, the module that tells which paths are not mounted filesystems, on this machine."""

from __future__ import annotations

from pathlib import Path

from conftest import plugin

mount_points = plugin("modules/mount_points.py")


def test_a_plain_or_missing_directory_is_unmounted_and_a_mount_is_not(tmp_path: Path) -> None:
    # / and /proc are mounted on every Linux machine this runs on.
    paths = [str(tmp_path), "/proc", str(tmp_path / "missing"), "/"]
    assert mount_points.unmounted(paths) == [str(tmp_path), str(tmp_path / "missing")]
