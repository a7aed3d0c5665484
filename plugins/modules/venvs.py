#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Make, fill and equip each app's virtualenv for this run, as the app, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: venvs
short_description: Make, fill and equip each app's virtualenv for this run, as the app, in one call
description:
  - Each release runs with a virtualenv of the app's venvs directory (root's), named after what pip installs into
    it (M(pyhost.scgi.venv_state) reads what that digests). Releases that agree on it share one.
  - venv and pip run through C(scgi-run) as the app's user, in its sandbox, with the virtualenv writable and, for
    pip, the network open; a package's build scripts never run as root nor outside the sandbox. The sandbox's
    umask (0027) leaves nothing of the virtualenv readable by other users.
  - An app that fails is reported in RV(failed_apps) with its reason (pip's output, for pip); the other apps are
    still done, and the task does not fail, so that the role can leave that app out and deploy the rest.
options:
  action:
    description:
      - V(stage_pip) unpacks Debian's pip wheel O(pip_wheel) into O(pip_dir) once, byte-compiled, readable by every
        app and writable by none, and removes the copies of an older pip beside it (C(pip-*)). A virtualenv gets
        no pip of its own (installing pip into each took 3-4 s per app).
      - V(create) makes each app's virtualenv that does not exist (no C(bin/python)), without pip.
      - V(install) runs the staged pip in each app's virtualenv that pip has not filled yet (no C(NAME.ready), as
        when new, or when a run failed there) with the app's requirements list and the requirements file of its release.
        M(pyhost.scgi.releases) marks it ready.
      - V(launcher) copies the staged launcher O(launcher) into each app's virtualenv (C(bin/pyhost-scgi-launcher))
        where it differs, as the app.
    type: str
    required: true
    choices: [stage_pip, create, install, launcher]
  apps:
    description:
      - The apps, as C(pyhost.scgi.scgi_apps) returns them; C(name), C(venvs_dir), C(deploy_dir) and
        C(requirements) are read. Only the apps with an entry in O(releases) and O(venvs) are.
    type: list
    elements: dict
    default: []
  releases:
    description: The release directory of this run, by app name.
    type: dict
    default: {}
  venvs:
    description: The name of the virtualenv each app's release runs with, by app name.
    type: dict
    default: {}
  pip_wheel:
    description: With V(stage_pip), the path of Debian's pip wheel.
    type: path
  pip_dir:
    description: Where Debian's pip is staged, named after its wheel; V(stage_pip) makes it, V(install) runs it.
    type: path
  launcher:
    description: With V(launcher), the path of the staged launcher.
    type: path
attributes:
  check_mode:
    description: Reports what would change, and changes nothing; V(launcher) compares the copies as the app.
    support: full
extends_documentation_fragment: [pyhost.scgi.attributes.per_app]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Create the missing virtualenvs, as each app
  pyhost.scgi.venvs:
    action: create
    apps: "{{ apps }}"
    releases: {blog: /srv/scgi/blog/releases/3f2a9c0d11e4b5a6}
    venvs: {blog: 9c41d0e2aa17f3b8}
  register: created
"""

RETURN = r"""
changed_apps:
  description: The apps whose virtualenv changed (or would, in check mode), in the order given.
  returned: always
  type: list
  elements: str
failed_apps:
  description: By app name, why it failed.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils import venvs
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused

REQUIRED = {"stage_pip": ["pip_wheel", "pip_dir"], "install": ["pip_dir"], "launcher": ["launcher"]}


def step(run, params, app, check_mode):
    """Whether ACTION changes APP's virtualenv for this run (or would, in check mode)."""
    name, release = app["name"], params["releases"][app["name"]]
    venv = f"{app['venvs_dir']}/{params['venvs'][name]}"
    if params["action"] == "create":
        if venvs.exists(app["venvs_dir"], params["venvs"][name]):
            return False
        if not check_mode:
            venvs.create(run, name, venv, release)
        return True
    if params["action"] == "install":
        if venvs.ready(app["venvs_dir"], params["venvs"][name]):
            return False
        if not check_mode:
            own = f"{release}/code/{app['requirements']}" if app["requirements"] else ""
            requirements = [f"{app['deploy_dir']}/requirements.txt", *([own] if own and os.path.lexists(own) else [])]
            venvs.install(run, name, venv, release, f"{params['pip_dir']}/pip", requirements)
        return True
    return venvs.install_launcher(run, name, params["launcher"], f"{venv}/bin/pyhost-scgi-launcher", check_mode)


def apply(run, params, check_mode):
    """changed_apps and failed_apps, as RETURN describes them."""
    changed, failed = [], {}
    for app in params["apps"]:
        if app["name"] not in params["releases"] or app["name"] not in params["venvs"]:
            continue
        try:
            if step(run, params, app, check_mode):
                changed.append(app["name"])
        except (Refused, OSError, KeyError) as exc:
            failed[app["name"]] = f"app {app['name']}: {exc}"
    return changed, failed


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["stage_pip", "create", "install", "launcher"]},
            "apps": {"type": "list", "elements": "dict", "default": []},
            "releases": {"type": "dict", "default": {}},
            "venvs": {"type": "dict", "default": {}},
            "pip_wheel": {"type": "path"},
            "pip_dir": {"type": "path"},
            "launcher": {"type": "path"},
        },
        required_if=[("action", action, options) for action, options in REQUIRED.items()],
        supports_check_mode=True,
    )
    params = module.params
    if params["action"] == "stage_pip":
        try:
            changed = venvs.stage_pip(params["pip_wheel"], params["pip_dir"], module.check_mode)
        except (Refused, OSError) as exc:
            module.fail_json(msg=f"Debian's pip could not be staged: {exc}")
        module.exit_json(changed=changed, changed_apps=[], failed_apps={})
    changed, failed = apply(module.run_command, params, module.check_mode)
    module.exit_json(changed=bool(changed), changed_apps=changed, failed_apps=failed)


if __name__ == "__main__":
    main()
