# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""What the collection's modules that write root's files share."""

from __future__ import annotations

import hashlib
import os
import stat


class Refused(Exception):
    """An entry that cannot be applied: the message says which and why."""


def regular_file(path):
    """The lstat() of the file at path, or None when there is none; a link, a directory or anything else but a
    regular file in its place is refused, never followed or replaced."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(found.st_mode):
        raise Refused(f"{path} is not a regular file: refusing to read or replace it")
    return found


def sha256(path):
    """The hexadecimal SHA-256 of the file at path, or None when there is no regular file."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as found:
        # Not hashlib.file_digest: Ubuntu 22.04's Python 3.10 lacks it.
        for block in iter(lambda: found.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
