#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Make each Django app's SECRET_KEY once, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: secret_keys
short_description: Make each Django app's SECRET_KEY once, in one call
description:
  - For each file given that does not exist, writes C(DJANGO_SECRET_KEY=) and a new random key (50 bytes of
    Python's C(secrets), URL-safe), owned by root and the app's group, mode 0640, through a new file in the same
    directory renamed into place.
  - A file that exists is kept as it is, so that sessions and signed tokens survive a redeploy; it is never read.
  - A key is never returned, shown or logged.
  - Refuses a symbolic link or anything but a regular file in a file's place.
options:
  keys:
    description: One entry per app.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {description: Absolute path of the file; its directory must exist., type: str, required: true}
      group: {description: The group that may read it (the app's)., type: str, required: true}
attributes:
  check_mode:
    description: Reports which files would be made, and makes none.
    support: full
extends_documentation_fragment: [pyhost.scgi.attributes.secret]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Generate each Django app's SECRET_KEY once
  pyhost.scgi.secret_keys:
    keys:
      - {path: /etc/scgi/blog/django-secret-key.env, group: blog}
"""

RETURN = r"""
changed_paths:
  description: The files made (or that would be, in check mode), in the order given.
  returned: always
  type: list
  elements: str
"""

import grp
import os
import secrets
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused, regular_file


def missing(path):
    """Whether the file at path must be made; anything but a regular file there is refused."""
    return regular_file(path) is None


def make(path, gid):
    directory, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as new:
            os.fchown(new.fileno(), -1, gid)  # owned by the user the module runs as: root
            os.fchmod(new.fileno(), 0o640)
            new.write(f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n")
            new.flush()
            os.fsync(new.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def apply(keys, check_mode):
    """The paths made (or that would be, in check mode)."""
    wanted = [entry for entry in keys if missing(entry["path"])]
    if not check_mode:
        for entry in wanted:
            try:
                gid = grp.getgrnam(entry["group"]).gr_gid
            except KeyError:
                raise Refused(f"{entry['path']}: no group {entry['group']!r}") from None
            make(entry["path"], gid)
    return [entry["path"] for entry in wanted]


def main():
    module = AnsibleModule(
        argument_spec={
            "keys": {"type": "list", "elements": "dict", "required": True, "no_log": False, "options": {
                "path": {"type": "str", "required": True},
                "group": {"type": "str", "required": True},
            }},
        },
        supports_check_mode=True,
    )
    try:
        changed = apply(module.params["keys"], module.check_mode)
    except (Refused, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(changed), changed_paths=changed)


if __name__ == "__main__":
    main()
