# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""What the collection's modules share about the apps they are given."""

from __future__ import annotations

# The options of a module that reads the apps as the pyhost.scgi.scgi_apps filter returns them, with the release
# directory of this run of each (by app name; an app whose code the run did not read has none).
APPS_AND_RELEASES = {
    "apps": {"type": "list", "elements": "dict", "required": True},
    "releases": {"type": "dict", "default": {}},
}
