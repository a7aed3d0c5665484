#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Link each app's release to its virtualenv, put it live, or roll it back, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: releases
short_description: Link each app's release to its virtualenv, put it live, or roll it back, in one call
description:
  - Each app's home is root's and holds its releases (C(releases/ID)), its virtualenvs (C(venvs/NAME)), the
    history of the releases that went live (C(releases/history)) and the links C(current), C(code) and C(venv)
    to the live one. Each swap of a link is one rename, so a process that starts sees one release or the other,
    whole; the processes already running keep theirs until the app restarts.
  - An app that fails (a release with no code or no virtualenv ready, no earlier release to roll back to, static
    files that cannot be published) is reported in RV(failed_apps) with its reason; the other apps are still
    done, and the task does not fail, so that the role can leave that app out and deploy the rest.
  - Root writes the history and the ready marks through no link planted in their place.
options:
  action:
    description:
      - V(link_venv) links each app's release of this run to its virtualenv (O(venvs)), which pip has just
        filled, and marks that ready. A live release whose virtualenv this changes must restart.
      - V(activate) makes each app's release of this run the live one, publishing its static files first (an
        app with C(static.source)), then keeps the O(keep) newest releases and the virtualenvs they use, and
        removes the rest. The release the app's processes still run stays on disk until the next deploy.
      - V(rollback) makes the release that was live before the current one live again, and forgets the current
        one (a later deploy of it finds it kept).
    type: str
    required: true
    choices: [link_venv, activate, rollback]
  apps:
    description:
      - The apps, as C(pyhost.scgi.scgi_apps) returns them; C(name), C(home), C(releases_dir) and C(static) are
        read. With V(link_venv) and V(activate), only the apps with an entry in O(releases) are.
    type: list
    elements: dict
    required: true
  releases:
    description: The release directory of this run (C(RELEASES_DIR/ID)), by app name.
    type: dict
    default: {}
  venvs:
    description: With V(link_venv), the name of the virtualenv each app's release runs with, by app name.
    type: dict
    default: {}
  keep:
    description: With V(activate), how many releases to keep, the live one included.
    type: int
    default: 3
  web_group:
    description: Apache's group, which may read the static files published.
    type: str
    default: www-data
attributes:
  check_mode:
    description: Reports which apps would change, and changes nothing.
    support: full
extends_documentation_fragment: [pyhost.scgi.attributes.per_app]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Put each app's new release live
  pyhost.scgi.releases:
    action: activate
    apps: "{{ apps }}"
    releases: {blog: /srv/scgi/blog/releases/3f2a9c0d11e4b5a6}
    keep: 3
  register: live

- name: Put the release before back
  pyhost.scgi.releases:
    action: rollback
    apps: "{{ apps | selectattr('name', 'eq', 'blog') }}"
"""

RETURN = r"""
changed_apps:
  description: The apps whose release changed (or would, in check mode), in the order given.
  returned: always
  type: list
  elements: str
failed_apps:
  description: By app name, why it failed; its links are as they were.
  returned: always
  type: dict
rolled_back_to:
  description: With V(rollback), the release ID each app was put back to (or would be), by app name.
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils import releases
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused


def apply(params, check_mode):
    """changed_apps, failed_apps and rolled_back_to, as RETURN describes them."""
    changed, failed, rolled_back_to = [], {}, {}
    action = params["action"]
    for app in params["apps"]:
        name, home = app["name"], app["home"]
        static = app.get("static") or {}
        publish = releases.Static(static["source"], static["dir"], params["web_group"]) if static.get("source") else None
        release = os.path.basename(params["releases"].get(name) or "")
        if action != "rollback" and not release:
            continue
        try:
            if action == "link_venv":
                if name not in params["venvs"]:
                    raise Refused("no virtualenv is named for its release")
                done = releases.link_venv(home, release, params["venvs"][name], check_mode)
            elif action == "activate":
                done = releases.activate(name, home, release, params["keep"], publish, check_mode)
            else:
                rolled_back_to[name] = releases.rollback(name, home, publish, check_mode)
                done = True
        except (Refused, OSError, KeyError) as exc:  # KeyError: no such user or group
            failed[name] = f"app {name}: {exc}"
            continue
        if done:
            changed.append(name)
    return changed, failed, rolled_back_to


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["link_venv", "activate", "rollback"]},
            "apps": {"type": "list", "elements": "dict", "required": True},
            "releases": {"type": "dict", "default": {}},
            "venvs": {"type": "dict", "default": {}},
            "keep": {"type": "int", "default": 3},
            "web_group": {"type": "str", "default": "www-data"},
        },
        supports_check_mode=True,
    )
    if module.params["keep"] < 1:
        module.fail_json(msg=f"keep must be 1 or more, not {module.params['keep']}")
    os.umask(0o027)
    changed, failed, rolled_back_to = apply(module.params, module.check_mode)
    module.exit_json(changed=bool(changed), changed_apps=changed, failed_apps=failed, rolled_back_to=rolled_back_to)


if __name__ == "__main__":
    main()
