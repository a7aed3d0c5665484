"""pyhost.scgi.mount_points, the module that tells which paths are not mounted filesystems, on this machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "mount_points", Path(__file__).resolve().parents[2] / "plugins/modules/mount_points.py")
assert _SPEC and _SPEC.loader
mount_points = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mount_points)


def test_a_plain_or_missing_directory_is_unmounted_and_a_mount_is_not(tmp_path: Path) -> None:
    # / and /proc are mounted on every Linux machine this runs on.
    paths = [str(tmp_path), "/proc", str(tmp_path / "missing"), "/"]
    assert mount_points.unmounted(paths) == [str(tmp_path), str(tmp_path / "missing")]
