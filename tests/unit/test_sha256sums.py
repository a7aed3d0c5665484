"""pyhost.scgi.sha256sums, the module that reads the SHA-256 of many files at once, on a real directory tree."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "sha256sums", Path(__file__).resolve().parents[2] / "plugins/modules/sha256sums.py")
assert _SPEC and _SPEC.loader
sha256sums = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(sha256sums)


def test_a_file_has_its_digest_and_anything_else_none(tmp_path: Path) -> None:
    data = b"x" * (3 << 20)  # more than one block
    (tmp_path / "code.tar").write_bytes(data)
    (tmp_path / "dir").mkdir()
    assert [sha256sums.sha256(str(tmp_path / name)) for name in ("code.tar", "missing", "dir")] == [
        hashlib.sha256(data).hexdigest(), None, None]
