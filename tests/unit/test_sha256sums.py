"""pyhost.scgi.sha256sums, the module that reads the SHA-256 of many files at once, on a real directory tree."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import plugin

sha256sums = plugin("modules/sha256sums.py")


def test_a_file_has_its_digest_and_anything_else_none(tmp_path: Path) -> None:
    data = b"x" * (3 << 20)  # more than one block
    (tmp_path / "code.tar").write_bytes(data)
    (tmp_path / "dir").mkdir()
    assert [sha256sums.sha256(str(tmp_path / name)) for name in ("code.tar", "missing", "dir")] == [
        hashlib.sha256(data).hexdigest(), None, None]
