#!/usr/bin/env python3
"""Build the launcher package into one file that Python runs: a zipapp.

  build.py OUTPUT

The same sources always give the same bytes (stored, not compressed, in a
fixed order with fixed times and modes), so a host whose launcher is current
sees no change, whichever controller or checkout built it. Runs on the
controller with the Python that runs Ansible.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent / "pyhost_scgi_launcher"
# What `python ZIPAPP` runs.
MAIN = b"from pyhost_scgi_launcher.cli import main\n\nmain()\n"
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip file can hold


def entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=EPOCH)
    info.external_attr = 0o644 << 16
    return info


def build(output: Path) -> None:
    with zipfile.ZipFile(output, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(entry("__main__.py"), MAIN)
        for source in sorted(PACKAGE.glob("*.py")):
            archive.writestr(entry(f"{PACKAGE.name}/{source.name}"), source.read_bytes())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build(Path(sys.argv[1]))
