#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""The documentation of the pyhost.scgi.code_archives action, which runs on the controller
(plugins/action/code_archives.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: code_archives
short_description: Make each app's code archive on the controller
description:
  - Runs on the controller, without become, whatever host the task is for; it writes only into the run's
    O(scratch) directory there.
  - V(git) clones each git source bare into C(SCRATCH/git-APP) and archives the commit its version names (a
    branch, a tag or a commit; or the commit O(pinned) gives) as C(SCRATCH/git-APP.tar). The repository is a
    tenant's. git runs with none of the operator's git configuration, whose filters a tenant's
    C(.gitattributes) would otherwise run, and with no hooks; only the operator's credential helpers are carried
    over, with the SSH agent and keys. Transports that run a command of the URL's choosing are refused, git never
    prompts, and a server that stops sending fails that app's fetch within 30 s instead of holding the run.
  - V(pack) packs each source directory of the task's host into C(SCRATCH/HOST-APP.tar) with GNU tar, owners and
    order normalised and version control, C(__pycache__) and C(*.pyc) left out, so that an unchanged tree gives
    the same archive and the same release; an archive source and a git source's archive are taken as they are.
  - One app whose git source cannot be fetched is reported in RV(failed_apps), and the others are still archived.
options:
  action:
    description: V(git) archives the git sources; V(pack) packs the source directories and digests every archive.
    type: str
    required: true
    choices: [git, pack]
  scratch:
    description: The run's scratch directory on the controller.
    type: path
    required: true
  apps:
    description:
      - The apps, as C(pyhost.scgi.scgi_apps) returns them; C(name) and C(source) are read. With V(git), the apps
        with a git source.
    type: list
    elements: dict
    required: true
  pinned:
    description: With V(git), the commit each app's source was pinned to earlier in the run, by app name.
    type: dict
    default: {}
attributes:
  check_mode:
    description: The same in check mode; it changes nothing on any host.
    support: full
  diff_mode:
    description: No diff; it changes nothing on any host.
    support: none
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Pack each source directory on the controller
  pyhost.scgi.code_archives:
    action: pack
    scratch: "{{ scratch.path }}"
    apps: "{{ apps }}"
  register: packed
"""

RETURN = r"""
commits:
  description: With V(git), the commit each app's source was archived from, by app name.
  returned: when action is git
  type: dict
failed_apps:
  description: With V(git), by app name, why its source could not be archived.
  returned: when action is git
  type: dict
archives:
  description: With V(pack), by app name, C(archive) (its path on the controller), C(sha256) and C(release).
  returned: when action is pack
  type: dict
"""
