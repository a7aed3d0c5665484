# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Put an app's releases live, and back (the pyhost.scgi.releases module).

An app's home (root's: the app can create, rename or replace nothing in it) holds its releases:

  releases/ID/code    the code of one archive, ID the start of its sha256: root's, read-only to the app
  releases/ID/venv    a link to ../../venvs/VENV, the virtualenv it runs with
  releases/ID/commit  for a git source, the commit
  venvs/VENV          a virtualenv, the app's own (pip fills it as the app); VENV digests what pip installs into
                      it, so releases with the same requirements share one; VENV.ready beside it once pip has
                      filled it
  releases/history    the IDs that went live, oldest first; the last is live
  current             a link to releases/ID, the live release
  code, venv          links to current/code and current/venv: the paths of the units, of scgi-run and of the
                      operator

Each swap of a link is one rename: a process that starts sees one release or the other, whole. The processes
already running keep theirs (the launcher starts on the links' real paths), until the app restarts.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess

from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused

# Every file root opens in the layout: never through a link, and a new one only by creating it. The app can
# change nothing in these root-owned directories; should it ever reach one (a layout name given to its media
# was one way), what it planted there is replaced or refused, never written through.
NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC


def relink(link, target, check_mode=False):
    """Point LINK at TARGET in one rename; False if it already does."""
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    if check_mode:
        return True
    new = link + ".new"
    if os.path.lexists(new):
        os.unlink(new)
    os.symlink(target, new)
    if os.path.isdir(link) and not os.path.islink(link):
        # A home of the layout before releases: its code or venv directory makes way for the link (the app
        # restarts on the release next).
        shutil.rmtree(link)
    os.rename(new, link)
    return True


def read_history(home):
    try:
        with os.fdopen(os.open(f"{home}/releases/history", os.O_RDONLY | NO_LINK), encoding="utf-8") as history:
            return [line.strip() for line in history if line.strip()]
    except FileNotFoundError:
        return []


def create(path):
    """A new file of root's at PATH, opened for writing; whatever was there before is removed first."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_LINK, 0o644)


def write_history(home, releases):
    path = f"{home}/releases/history"
    with os.fdopen(create(path + ".new"), "w", encoding="utf-8") as history:
        history.writelines(f"{release}\n" for release in releases)
    os.rename(path + ".new", path)


def live(home):
    """The ID of the live release, or '' before the first."""
    target = os.readlink(f"{home}/current") if os.path.islink(f"{home}/current") else ""
    return os.path.basename(target)


def check_complete(home, release):
    """Refuse a release without its code, or whose virtualenv pip has not filled."""
    if not os.path.isdir(f"{home}/releases/{release}/code"):
        raise Refused(f"release {release} has no code in {home}/releases")
    venv = os.path.islink(f"{home}/releases/{release}/venv") and os.readlink(f"{home}/releases/{release}/venv")
    if not venv or not os.path.isfile(f"{home}/venvs/{os.path.basename(venv)}.ready"):
        raise Refused(f"release {release} has no virtualenv ready in {home}/venvs")


class Static:
    """Where a release's static files are published from and to: SOURCE, a directory of its code, becomes the
    content of DIR, as the app's user, readable by Apache's GROUP."""

    def __init__(self, source, directory, group):
        self.source, self.dir, self.group = source, directory, group


def publish_static(app, code, static):
    """Copy static.source (a directory of CODE) as the content of static.dir, as the app's user."""
    real_code = os.path.realpath(code)
    real_source = os.path.realpath(os.path.join(code, static.source))
    if not real_source.startswith(real_code + "/") or not os.path.isdir(real_source):
        raise Refused(f"static.source {static.source!r} is not a directory inside the code")
    new, old = static.dir + ".new", static.dir + ".old"
    for leftover in (new, old):
        if os.path.lexists(leftover):
            shutil.rmtree(leftover)
    os.mkdir(new, 0o750)
    os.chown(new, pwd.getpwnam(app).pw_uid, grp.getgrnam(static.group).gr_gid)
    # setgid: what the app copies in belongs to Apache's group, which may read it.
    os.chmod(new, 0o2750)
    # -P: links are copied as links, never followed; umask 0027: nothing for other users.
    copied = subprocess.run(["runuser", "-u", app, "--", "/bin/sh", "-c", 'umask 0027 && exec cp -RP -- "$1"/. "$2"/',
                             "sh", real_source, new], check=False, capture_output=True, text=True)
    if copied.returncode != 0:
        raise Refused(f"its static files could not be copied: {copied.stderr.strip()}")
    if os.path.lexists(static.dir):
        os.rename(static.dir, old)
    os.rename(new, static.dir)
    if os.path.lexists(old):
        shutil.rmtree(old)


def go_live(app, home, release, static):
    """Make RELEASE the live release: its static files first (with STATIC, a Static), then the links."""
    check_complete(home, release)
    if static:
        publish_static(app, f"{home}/releases/{release}/code", static)
    relink(f"{home}/current", f"releases/{release}")
    relink(f"{home}/code", "current/code")
    relink(f"{home}/venv", "current/venv")


def prune(home, history, keep, running):
    """Remove the releases beyond the KEEP newest, and the virtualenvs none of the kept ones uses; return the
    history of the kept ones. RUNNING, the release the app's processes still run until it restarts, stays on
    disk whatever KEEP says (a later deploy removes it)."""
    kept = history[-keep:]
    for entry in os.listdir(f"{home}/releases"):
        if entry not in ("history", "history.new", running, *kept):
            shutil.rmtree(f"{home}/releases/{entry}")
    used = {os.path.basename(os.readlink(f"{home}/releases/{release}/venv")) for release in (*kept, running)
            if os.path.islink(f"{home}/releases/{release}/venv")}
    for entry in os.listdir(f"{home}/venvs"):
        path = f"{home}/venvs/{entry}"
        if entry.removesuffix(".ready") not in used:
            # shutil.rmtree follows no link, and resists the app swapping a directory for one meanwhile.
            (shutil.rmtree if os.path.isdir(path) and not os.path.islink(path) else os.unlink)(path)
    return kept


def link_venv(home, release, venv, check_mode=False):
    """Link RELEASE to the virtualenv VENV, which pip has just filled, and mark that ready; whether the link
    changed."""
    ready = f"{home}/venvs/{venv}.ready"
    if not check_mode and (not os.path.isfile(ready) or os.path.islink(ready)):
        os.close(create(ready))
    return relink(f"{home}/releases/{release}/venv", f"../../venvs/{venv}", check_mode)


def activate(app, home, release, keep, static=None, check_mode=False):
    """Make RELEASE the live one, publishing its static files first (with STATIC, a Static), then keep the KEEP
    newest releases and the virtualenvs they use, and remove the rest; whether the live release changed."""
    running = live(home)
    changed = running != release or not os.path.islink(f"{home}/code") or not os.path.islink(f"{home}/venv")
    if check_mode:
        return changed
    history = read_history(home)
    if changed:
        go_live(app, home, release, static)
    kept = prune(home, [entry for entry in history if entry != release] + [release], keep, running)
    if kept != history:
        write_history(home, kept)
    return changed


def rollback(app, home, static=None, check_mode=False):
    """Make the release that was live before the current one live again, and forget the current one (a later
    deploy of it finds it kept); the ID of the release put back (or that would be)."""
    history, current = read_history(home), live(home)
    earlier = history[: history.index(current)] if current in history else []
    if not earlier:
        raise Refused(f"no release before the live one ({current or 'none'}) is kept on this host")
    if not check_mode:
        go_live(app, home, earlier[-1], static)
        write_history(home, earlier)
    return earlier[-1]
