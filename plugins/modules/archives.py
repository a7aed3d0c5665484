#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Unpack each app's code archive as a release, or pack and unpack the static files a front end serves."""

from __future__ import annotations

DOCUMENTATION = r"""
module: archives
short_description: Unpack each app's code archive as a release, or pack and unpack the static files a front end serves
description:
  - Runs as root, and an archive may be hostile (it comes from the app's operator, or is packed from a directory the
    app's code may have written). Every member is checked before anything is written; only regular files,
    directories and symbolic links whose target stays inside the tree come out, no absolute path, no C(..), no
    member below a link, no name twice. Device nodes, FIFOs and hard links are refused, naming the first one.
  - A tree is unpacked beside its place, owned by root and readable by the app's group (or Apache's), links last,
    and comes in with one rename, whole.
  - An app that fails is reported in RV(failed_apps) with its reason; the other apps are still done, and the task
    does not fail, so that the role can leave that app out and deploy the rest.
options:
  action:
    description:
      - V(unpack_code) unpacks each app's code archive (C(DEPLOY_DIR/code.tar)) as the code of its release of this
        run (C(RELEASE/code)), byte-compiled, unless that release has its code already (kept from an earlier
        deploy). With a commit in O(commits), it is recorded in C(RELEASE/commit).
      - V(pack_static), on a worker, packs each app's static directory into C(DEPLOY_DIR/static.tar) as the app
        (root reads nothing the app could redirect with a link), unless its tree is over O(max_size) bytes
        (apparent size). It writes only that transfer file, also in check mode.
      - V(unpack_static), on a front end that does not run the app, replaces its static directory with the content
        of C(DEPLOY_DIR/static.tar), readable by O(web_group), unless a stamp says it came from that archive.
    type: str
    required: true
    choices: [unpack_code, pack_static, unpack_static]
  apps:
    description:
      - The apps, as C(pyhost.scgi.scgi_apps) returns them; C(name), C(deploy_dir) and C(static.dir) are read.
        With V(unpack_code), only the apps with an entry in O(releases) are.
    type: list
    elements: dict
    required: true
  releases:
    description: With V(unpack_code), the release directory of this run (C(RELEASES_DIR/ID)), by app name.
    type: dict
    default: {}
  commits:
    description: With V(unpack_code), the git commit each git source was archived from, by app name.
    type: dict
    default: {}
  web_group:
    description: With V(unpack_static), Apache's group, which may read the static files.
    type: str
    default: www-data
  max_size:
    description: With V(pack_static), the most bytes an app's static files may take.
    type: int
    default: 1073741824
attributes:
  check_mode:
    description: V(unpack_code) and V(unpack_static) report what they would unpack and write nothing.
    support: partial
    details: V(pack_static) packs in check mode too; it writes only its archive, a transfer file.
extends_documentation_fragment: [pyhost.scgi.attributes.per_app]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Unpack each app's code as a release
  pyhost.scgi.archives:
    action: unpack_code
    apps: "{{ apps }}"
    releases: {blog: /srv/scgi/blog/releases/3f2a9c0d11e4b5a6}
  register: unpacked
"""

RETURN = r"""
changed_apps:
  description: The apps whose tree or archive changed (or would, in check mode), in the order given.
  returned: always
  type: list
  elements: str
failed_apps:
  description: By app name, why it failed; its tree is as it was.
  returned: always
  type: dict
"""

import os
import tarfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils import archives
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused

# What an app's failure says, by action, around its reason: when its archive or tree is refused, and when the
# host could not do it.
REFUSED = {"unpack_code": "the code archive is refused: {}", "pack_static": "its static files {}",
           "unpack_static": "the static archive is refused: {}"}
FAILED = {"unpack_code": "cannot unpack the code archive: {}", "pack_static": "its static files cannot be packed: {}",
          "unpack_static": "cannot unpack the static archive: {}"}


def step(run, params, app, check_mode):
    """Whether the action changes APP's tree or archive (or would, in check mode)."""
    name, deploy_dir = app["name"], app["deploy_dir"]
    if params["action"] == "unpack_code":
        return archives.unpack_release(f"{deploy_dir}/code.tar", f"{params['releases'][name]}/code", name,
                                       params["commits"].get(name) or "", check_mode)
    if params["action"] == "pack_static":
        return archives.pack_static(run, name, app["static"]["dir"], f"{deploy_dir}/static.tar", params["max_size"])
    return archives.unpack_static(f"{deploy_dir}/static.tar", app["static"]["dir"], params["web_group"], check_mode)


def apply(run, params, check_mode):
    """changed_apps and failed_apps, as RETURN describes them."""
    changed, failed = [], {}
    for app in params["apps"]:
        name = app["name"]
        if params["action"] == "unpack_code" and name not in params["releases"]:
            continue
        try:
            if step(run, params, app, check_mode):
                changed.append(name)
        except (Refused, tarfile.TarError) as exc:
            failed[name] = f"app {name}: " + REFUSED[params["action"]].format(exc)
        except OSError as exc:
            failed[name] = f"app {name}: " + FAILED[params["action"]].format(exc)
    return changed, failed


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": list(REFUSED)},
            "apps": {"type": "list", "elements": "dict", "required": True},
            "releases": {"type": "dict", "default": {}},
            "commits": {"type": "dict", "default": {}},
            "web_group": {"type": "str", "default": "www-data"},
            "max_size": {"type": "int", "default": 1 << 30},
        },
        supports_check_mode=True,
    )
    # Nothing unpacked or packed is readable by other users.
    os.umask(0o027)
    changed, failed = apply(module.run_command, module.params, module.check_mode)
    module.exit_json(changed=bool(changed), changed_apps=changed, failed_apps=failed)


if __name__ == "__main__":
    main()
