#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Which of many paths are not the top of a mounted filesystem."""

from __future__ import annotations

DOCUMENTATION = r"""
module: mount_points
short_description: Which of many paths are not the top of a mounted filesystem
description:
  - Reads only. For each path, whether a filesystem is mounted there (Python's C(os.path.ismount)), so that a run
    can refuse a shared directory that the operator has not mounted yet before anything on the host changes.
  - A path that does not exist is not mounted.
options:
  paths:
    description: Absolute paths.
    type: list
    elements: path
    required: true
extends_documentation_fragment: [pyhost.scgi.attributes.read_only]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Find the shared media directories that are not mounted here
  pyhost.scgi.mount_points:
    paths: [/srv/scgi/blog/media]
  register: media_mounts
"""

RETURN = r"""
unmounted:
  description: The paths given that are not the top of a mounted filesystem, in the order given.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule


def unmounted(paths):
    return [path for path in paths if not os.path.ismount(path)]


def main():
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "path", "required": True}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, unmounted=unmounted(module.params["paths"]))


if __name__ == "__main__":
    main()
