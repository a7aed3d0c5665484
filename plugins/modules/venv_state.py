#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""What each app's virtualenv for this run depends on."""

from __future__ import annotations

DOCUMENTATION = r"""
module: venv_state
short_description: What each app's virtualenv for this run depends on
description:
  - Reads only. For each app, the SHA-256 of the requirements file in the code of this run's release (empty when
    the app has none); and the host's Python version and Debian's pip wheel, which the virtualenvs' names digest
    too. M(pyhost.scgi.venvs) then makes and fills the virtualenvs so named that are missing.
  - The app's code is the app's own, and it may plant links in it. Root reads the requirements file only when no
    link leads to it, and never a FIFO or a device. A requirements file behind a link counts as the release's,
    digested by its path.
options:
  apps:
    description:
      - The apps, as C(pyhost.scgi.scgi_apps) returns them; C(name) and C(requirements) are read.
    type: list
    elements: dict
    required: true
  releases:
    description: The release directory of this run, by app name; needed for every app that has C(requirements).
    type: dict
    default: {}
extends_documentation_fragment: [pyhost.scgi.attributes.read_only]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Read what each app's virtualenv depends on
  pyhost.scgi.venv_state:
    apps: "{{ apps }}"
    releases: {blog: /srv/scgi/blog/releases/3f2a9c0d11e4b5a6}
  register: venv_state
"""

RETURN = r"""
apps:
  description: By app name, C(requirements) (the digest, or empty).
  returned: always
  type: dict
python:
  description: The host's Python version, as C(sys.version) gives it.
  returned: always
  type: str
pip:
  description: The newest of Debian's pip wheels (C(/usr/share/python-wheels)), as a list of at most one path.
  returned: always
  type: list
  elements: str
"""

import glob
import hashlib
import os
import stat
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils.apps import APPS_AND_RELEASES

PIP_WHEELS = "/usr/share/python-wheels/pip-*.whl"


def read(path):
    """The bytes of a regular file that no link leads to, or None."""
    if not path or os.path.realpath(path) != os.path.abspath(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as found:
        return found.read() if stat.S_ISREG(os.fstat(found.fileno()).st_mode) else None


def requirements_digest(path):
    code = read(path)
    if code is None and path and os.path.lexists(path):
        code = b"release " + path.encode()
    return "" if code is None else hashlib.sha256(code).hexdigest()


def state(app, releases):
    requirements = f"{releases[app['name']]}/code/{app['requirements']}" if app["requirements"] else ""
    return {"requirements": requirements_digest(requirements)}


def main():
    module = AnsibleModule(
        argument_spec=APPS_AND_RELEASES,
        supports_check_mode=True,
    )
    try:
        apps = {app["name"]: state(app, module.params["releases"]) for app in module.params["apps"]}
    except KeyError as exc:
        module.fail_json(msg=f"an app lacks {exc} (a key of pyhost.scgi.scgi_apps, or its release in releases)")
    module.exit_json(changed=False, apps=apps, python=sys.version, pip=sorted(glob.glob(PIP_WHEELS))[-1:])


if __name__ == "__main__":
    main()
