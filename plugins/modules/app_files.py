#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Make many directories and files, each with its owner, group and mode, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: app_files
short_description: Make many directories and files, each with its owner, group and mode, in one call
description:
  - The roles of pyhost.scgi render every app's files on the controller and apply them with one call
    per host instead of one module call per file, so that a run that changes nothing costs about the
    same whatever the number of apps.
  - Directories are made in the order given (parents first); files are written after them.
  - Never follows a symbolic link. A link or anything but a directory where a directory should be is
    an error. A file is replaced atomically (a new file in the same directory, then renamed over the
    old one), so a link in its place is replaced, not followed.
  - Returns which paths changed and which apps they belong to, for handlers that restart those apps.
  - Files are written after the directories, then the absent ones are removed.
options:
  directories:
    description: Directories to make or correct, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: str, required: true}
      owner: {description: User name., type: str, required: true}
      group: {description: Group name., type: str, required: true}
      mode:
        description: Four octal digits, as a string, such as C("0750") or C("2750"); a number is refused (YAML reads 0750 unquoted as 488).
        type: raw
        required: true
      app:
        description: The app it belongs to, reported in C(changed_apps) when it changes.
        type: str
  files:
    description: Files to write or correct.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path; its directory must exist., type: str, required: true}
      content: {description: The whole content (text)., type: str, required: true}
      owner: {description: User name., type: str, required: true}
      group: {description: Group name., type: str, required: true}
      mode:
        description: Four octal digits, as a string, such as C("0640"); a number is refused.
        type: raw
        required: true
      app:
        description: The app it belongs to, reported in C(changed_apps) when it changes.
        type: str
      validate:
        description:
          - A command run on the new content before it replaces the file, C(%s) standing for a temporary
            file's path; the file is left as it was when the command fails.
        type: str
  absent:
    description: Files to remove (removing a directory is refused).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description:
      - Reports what would change and changes nothing. No C(validate) command runs, and an owner or group
        that does not exist yet counts as a change.
    support: full
  diff_mode:
    description:
      - For each path made, changed or removed, what it was and what it becomes; a file's content, or its
        owner, group and mode when only those change.
    support: full
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Write each app's environment
  pyhost.scgi.app_files:
    directories:
      - {path: /etc/scgi/blog, owner: root, group: blog, mode: "0750", app: blog}
    files:
      - {path: /etc/scgi/blog/app.env, content: "LANG=C.UTF-8\n", owner: root, group: blog, mode: "0640", app: blog}
"""

RETURN = r"""
changed_paths:
  description: The paths made or changed, in the order applied.
  returned: always
  type: list
  elements: str
changed_apps:
  description: The apps (their C(app) key) of the paths made or changed, sorted, each once.
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import re
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

ENTRY = {
    "path": {"type": "str", "required": True},
    "owner": {"type": "str", "required": True},
    "group": {"type": "str", "required": True},
    "mode": {"type": "raw", "required": True},
    "app": {"type": "str"},
}


class Refused(Exception):
    """A path that must not be touched as asked; the message names it."""


def lookup(database, name, path, check_mode):
    """The uid (database pwd) or gid (grp) of name. In check mode a user or
    group that a real run would have made by now (an app's) is None: the
    entry then counts as changed."""
    try:
        entry = database.getpwnam(name) if database is pwd else database.getgrnam(name)
    except KeyError:
        if check_mode:
            return None
        kind = "user" if database is pwd else "group"
        raise Refused(f"{path}: no {kind} named {name!r}") from None
    return entry[2]


def ids(entry, check_mode):
    """(uid, gid, mode) of an entry."""
    uid = lookup(pwd, entry["owner"], entry["path"], check_mode)
    gid = lookup(grp, entry["group"], entry["path"], check_mode)
    # A number is refused: YAML reads an unquoted 0640 as 416, whose digits mean another mode.
    if not (isinstance(entry["mode"], str) and re.fullmatch("[0-7]{4}", entry["mode"])):
        raise Refused(f"{entry['path']}: mode {entry['mode']!r} is not four octal digits in a string, such as '0640'")
    mode = int(entry["mode"], 8)
    if not os.path.isabs(entry["path"]):
        raise Refused(f"{entry['path']}: not an absolute path")
    return uid, gid, mode


def describe(uid, gid, mode):
    return f"owner {'(new)' if uid is None else uid}, group {'(new)' if gid is None else gid}, mode {mode:04o}"


def apply_directory(entry, check_mode):
    """Make or correct one directory; returns a diff or None when it was right."""
    uid, gid, mode = ids(entry, check_mode)
    path = entry["path"]
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    if found is not None and not stat.S_ISDIR(found.st_mode):
        raise Refused(f"{path} exists and is not a directory (a link or a file): refusing to use it")
    if found is not None and (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (uid, gid, mode):
        return None
    before = "absent" if found is None else describe(found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode))
    if not check_mode:
        if found is None:
            os.mkdir(path, 0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    return {"before_header": path, "after_header": path,
            "before": f"directory: {before}\n", "after": f"directory: {describe(uid, gid, mode)}\n"}


def read_file(path):
    """(stat, content) of the regular file at path, (None, None) if there is none or a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if os.path.islink(path):
            return None, None
        raise Refused(f"{path}: cannot read it: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as found:
        info = os.fstat(found.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{path} exists and is not a regular file: refusing to replace it")
        return info, found.read()


def apply_file(entry, check_mode, created_dirs, run_command):
    """Write or correct one file; returns a diff or None when it was right."""
    uid, gid, mode = ids(entry, check_mode)
    path = entry["path"]
    content = entry["content"].encode("utf-8")
    if os.path.dirname(path) in created_dirs:
        info, old = None, None  # check mode: its directory does not exist yet
    else:
        info, old = read_file(path)
    if info is not None and old == content and (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, mode):
        return None
    if not check_mode:
        if old == content:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        else:
            directory, name = os.path.split(path)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
            try:
                with os.fdopen(fd, "wb") as new:
                    new.write(content)
                    new.flush()
                    os.fchown(new.fileno(), uid, gid)
                    os.fchmod(new.fileno(), mode)
                    os.fsync(new.fileno())
                if entry.get("validate"):
                    validate(entry["validate"], temporary, path, run_command)
                os.replace(temporary, path)
            except BaseException:
                if os.path.lexists(temporary):
                    os.unlink(temporary)
                raise
    before = "" if old is None else old.decode("utf-8", "replace")
    if info is not None and old == content:
        before = f"{describe(info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))}\n"
        after = f"{describe(uid, gid, mode)}\n"
    else:
        after = entry["content"]
    return {"before_header": path, "after_header": path, "before": before, "after": after}


def validate(command, temporary, path, run_command):
    if "%s" not in command:
        raise Refused(f"{path}: validate must contain %s, not {command!r}")
    status, out, err = run_command(command.replace("%s", temporary))
    if status != 0:
        raise Refused(f"{path}: the new content failed validation ({command}): {(err or out).strip()}")


def remove(path, check_mode):
    """Remove one file; returns a diff or None when there was none."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(found.st_mode):
        raise Refused(f"{path} is a directory: refusing to remove it")
    if not check_mode:
        os.unlink(path)
    return {"before_header": path, "after_header": path, "before": "file: present\n", "after": "file: absent\n"}


def apply(directories, files, check_mode, absent=(), run_command=None):
    """(changed paths, changed apps, diffs) after applying every entry."""
    changed, apps, diffs, created = [], set(), [], set()
    for entry in directories:
        diff = apply_directory(entry, check_mode)
        if diff:
            if diff["before"] == "directory: absent\n":
                created.add(entry["path"])
            changed.append(entry["path"])
            diffs.append(diff)
            if entry.get("app"):
                apps.add(entry["app"])
    for entry in files:
        diff = apply_file(entry, check_mode, created, run_command)
        if diff:
            changed.append(entry["path"])
            diffs.append(diff)
            if entry.get("app"):
                apps.add(entry["app"])
    for path in absent:
        diff = remove(path, check_mode)
        if diff:
            changed.append(path)
            diffs.append(diff)
    return changed, sorted(apps), diffs


def main():
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": [], "options": ENTRY},
            "files": {"type": "list", "elements": "dict", "default": [],
                      "options": {**ENTRY, "content": {"type": "str", "required": True}, "validate": {"type": "str"}}},
            "absent": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        changed, apps, diffs = apply(module.params["directories"], module.params["files"], module.check_mode,
                                     module.params["absent"], module.run_command)
    except (Refused, OSError) as exc:
        module.fail_json(msg=str(exc))
    result = {"changed": bool(changed), "changed_paths": changed, "changed_apps": apps}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
