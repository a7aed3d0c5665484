#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""What each Django app's migrate and collectstatic would run with now, and what they last succeeded with."""

from __future__ import annotations

DOCUMENTATION = r"""
module: prepared
short_description: What each Django app's migrate and collectstatic would run with now, and what they last succeeded with
description:
  - Reads only. For each app, a digest of what its deploy-time steps depend on, the steps asked for
    (C(django.migrate), C(django.collectstatic)), the release and its virtualenv, and the app's C(app.env),
    C(secret.env) and C(pyhost_scgi_settings.py); and the digest its last successful preparation left in
    C(DEPLOY_DIR/prepared). The role runs the steps when the two differ.
  - Only a digest of each file leaves the host, never a secret.
options:
  apps:
    description:
      - The Django apps, as C(pyhost.scgi.scgi_apps) returns them; C(name), C(config_dir), C(deploy_dir), C(home) and
        C(django) are read.
    type: list
    elements: dict
    required: true
  releases:
    description: The release directory of this run by app name; an app not in it has its live release, C(HOME/current).
    type: dict
    default: {}
extends_documentation_fragment: [pyhost.scgi.attributes.read_only]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Read what each Django app was last prepared with
  pyhost.scgi.prepared:
    apps: "{{ django_apps }}"
    releases: {blog: /srv/scgi/blog/releases/20261207T101500-3f2a}
  register: prepared
"""

RETURN = r"""
apps:
  description: By app name, C(inputs), the digest of what the steps depend on now, and C(prepared), the digest of
    their last success (empty when there was none).
  returned: always
  type: dict
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils.apps import APPS_AND_RELEASES


def read(path):
    try:
        with open(path, "rb") as found:
            return found.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def state(app, release):
    """{inputs, prepared} of one app."""
    steps = f"migrate={app['django']['migrate']} collectstatic={app['django']['collectstatic']}"
    venv = os.readlink(f"{release}/venv") if os.path.islink(f"{release}/venv") else ""
    inputs = hashlib.sha256(f"{steps} {os.path.basename(os.path.realpath(release))} {venv}".encode())
    config = app["config_dir"]
    for path in (f"{config}/app.env", f"{config}/secret.env", f"{config}/pyhost_scgi_settings.py"):
        inputs.update(hashlib.sha256(read(path) or b"-").digest())
    prepared = (read(f"{app['deploy_dir']}/prepared") or b"").decode().strip()
    return {"inputs": inputs.hexdigest(), "prepared": prepared}


def states(apps, releases):
    return {app["name"]: state(app, releases.get(app["name"], f"{app['home']}/current")) for app in apps}


def main():
    module = AnsibleModule(
        argument_spec=APPS_AND_RELEASES,
        supports_check_mode=True,
    )
    try:
        found = states(module.params["apps"], module.params["releases"])
    except (KeyError, TypeError) as exc:
        module.fail_json(msg=f"an app lacks a key that pyhost.scgi.scgi_apps gives it: {exc}")
    module.exit_json(changed=False, apps=found)


if __name__ == "__main__":
    main()
