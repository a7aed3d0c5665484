#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""The SHA-256 of each of many files, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sha256sums
short_description: The SHA-256 of each of many files, in one call
description:
  - Reads only. The SHA-256 of each file given, or null where there is no regular file, so that a run copies only
    the archives that differ with one call per host instead of one per app.
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
- name: Read the sha256 of each app's code archive on its host
  pyhost.scgi.sha256sums:
    paths: [/var/lib/pyhost-scgi/blog/code.tar]
  register: archives
"""

RETURN = r"""
sha256:
  description: The hexadecimal SHA-256 of each path, in the order given; null where there is no regular file.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils.files import sha256


def main():
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "path", "required": True}},
        supports_check_mode=True,
    )
    try:
        sums = [sha256(path) for path in module.params["paths"]]
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename}: {exc.strerror}")
    module.exit_json(changed=False, sha256=sums)


if __name__ == "__main__":
    main()
