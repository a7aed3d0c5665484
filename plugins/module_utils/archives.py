# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Unpack an app's code archive as a release of its own, once per archive, or a front end's copy of its static
files (the pyhost.scgi.archives module).

A release's code is HOME/releases/ID/code, ID naming the archive (the start of its sha256): a release already
unpacked is left as it is; pyhost.scgi.releases puts it live. The commit of a git source, which the controller
archived, goes into HOME/releases/ID/commit (status.yml shows it); never what the archive says of itself (any
archive can carry the pax comment that `git archive` writes).

On a front end that does not run the app, the archive holds the static files the app collected on a worker, and
comes out with the same checks, owned by root and readable by Apache's group, without byte-compiling.

Runs as root, and the archive may be hostile: it comes from the app's operator, or is packed from a directory
that the app's own code may have written. So:

* every member is checked before anything is written: only regular files, directories and symbolic links whose
  target stays inside the tree, no absolute path, no '..', no member below a symbolic link, no name twice.
  Device nodes, FIFOs and hard links are refused. The first offending member fails the app, by name;
* the new tree is unpacked into CODE.new, inside the app's root-owned home, where the app cannot create,
  replace or rename anything; links are made last, so nothing is ever written through one;
* the tree belongs to root, readable by the app's group only (directories 0750, files 0640, or 0750 where the
  archive made them executable);
* it is byte-compiled here, because at run time the code is read-only to the app (ProtectSystem=strict);
  compiling parses, it runs nothing.

A tree comes in with a rename, whole: a release directory that has its code has all of it. The static files of
a front end replace the live ones the same way, and a stamp of the archive they came from makes a repeated run
a no-op.
"""

from __future__ import annotations

import filecmp
import grp
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable

from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused, sha256


def checked_members(members: Iterable[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The members to extract, in a safe order (links last); raise Refused for the first bad one."""
    members = list(members)
    # All the links first, wherever they come in the archive: no path may go through one.
    links = {posixpath.normpath(member.name) for member in members if member.issym()}
    seen: set[str] = set()
    kept: list[tarfile.TarInfo] = []
    for member in members:
        name = posixpath.normpath(member.name)
        if member.name.startswith("/") or name == ".." or name.startswith("../"):
            raise Refused(f"{member.name!r}: a path outside the code")
        if name == ".":
            continue
        if not (member.isreg() or member.isdir() or member.issym()):
            raise Refused(f"{member.name!r}: {_kind(member)} (only files, directories and links inside the code)")
        parents = name.split("/")[:-1]
        if any("/".join(parents[: depth + 1]) in links for depth in range(len(parents))):
            raise Refused(f"{member.name!r}: a path through a symbolic link")
        if name in seen:
            raise Refused(f"{member.name!r}: in the archive twice")
        if member.issym():
            _check_link(member.name, parents, member.linkname, links)
        seen.add(name)
        member.name = name
        kept.append(member)
    return [m for m in kept if not m.issym()] + [m for m in kept if m.issym()]


def _check_link(name: str, directory: list[str], target: str, links: set[str]) -> None:
    """Refuse a link whose target leaves the code, as the kernel resolves it.

    The target is walked from the link's directory the way the kernel walks
    it: '..' after a link climbs from where the link points, not from where it
    is. So no part of the way may be another link; only the last step may."""
    outside = Refused(f"{name!r}: a symbolic link to {target!r}, outside the code")
    if not target or target.startswith("/"):
        raise outside
    path = list(directory)
    steps = [step for step in target.split("/") if step not in ("", ".")]
    for index, step in enumerate(steps):
        if step == "..":
            if not path:
                raise outside
            path.pop()
            continue
        path.append(step)
        if index < len(steps) - 1 and "/".join(path) in links:
            raise Refused(f"{name!r}: a symbolic link to {target!r}, through the link {'/'.join(path)!r}")


def _kind(member: tarfile.TarInfo) -> str:
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device node"
    if member.isfifo():
        return "a FIFO"
    return "a special file"


def extract(archive: str, target: str) -> None:
    """Unpack ARCHIVE's checked members into the new directory TARGET, owned by root."""
    os.mkdir(target, 0o700)
    with tarfile.open(archive) as tar:
        for member in checked_members(tar.getmembers()):
            path = os.path.join(target, member.name)
            if member.isdir():
                os.makedirs(path, 0o700, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            if member.issym():
                os.symlink(member.linkname, path)
                continue
            source = tar.extractfile(member)
            if source is None:
                raise Refused(f"{member.name!r}: no data")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with source, os.fdopen(os.open(path, flags, 0o600), "wb") as out:
                shutil.copyfileobj(source, out)
            if member.mode & 0o111:
                os.chmod(path, 0o700)


def hand_over(tree: str, gid: int) -> None:
    """Root owns the tree; the app's group may read it (and run what was executable); others nothing."""
    for root, dirs, files in os.walk(tree):
        for name in [*dirs, *files, None]:
            path = root if name is None else os.path.join(root, name)
            os.lchown(path, 0, gid)
            if os.path.islink(path):
                continue
            owner_x = os.stat(path).st_mode & 0o100
            os.chmod(path, 0o750 if os.path.isdir(path) or owner_x else 0o640)


def gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise Refused(f"there is no group {group!r}") from None


def swap(new: str, live: str) -> None:
    """Put NEW in place of LIVE."""
    old = live + ".old"
    if os.path.lexists(old):
        shutil.rmtree(old)
    if os.path.lexists(live):
        os.rename(live, old)
    os.rename(new, live)
    if os.path.lexists(old):
        shutil.rmtree(old)


COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories


def unpack_release(archive: str, code: str, group: str, commit: str = "", check_mode: bool = False) -> bool:
    """Unpack ARCHIVE as CODE, the code of a release, unless it is there; byte-compile it. COMMIT, the git
    commit it was archived from, is recorded beside it. Whether it unpacked (or would, in check mode)."""
    if commit and not COMMIT_RE.fullmatch(commit):
        raise Refused(f"{commit!r} is not a commit id")
    if os.path.isdir(code):
        return False
    if check_mode:
        return True
    # The release directory: root's, and like the home, passable but not listable.
    if not os.path.isdir(os.path.dirname(code)):
        os.mkdir(os.path.dirname(code))
        os.chmod(os.path.dirname(code), 0o711)
    new = code + ".new"
    if os.path.lexists(new):
        shutil.rmtree(new)
    extract(archive, new)
    compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", new, "-p", code, new],
                              capture_output=True, text=True, check=False)
    if compiled.returncode != 0:
        raise Refused(f"its Python does not compile: {(compiled.stdout + compiled.stderr).strip()[-2000:]}")
    hand_over(new, gid(group))
    if commit:
        with open(os.path.join(os.path.dirname(code), "commit"), "w", encoding="ascii") as record:
            record.write(commit + "\n")
    os.rename(new, code)
    return True


def unpack_static(archive: str, static: str, group: str, check_mode: bool = False) -> bool:
    """Replace STATIC with the content of ARCHIVE, unless the stamp says it came from that archive. Whether it
    did (or would, in check mode)."""
    stamp = archive + ".unpacked"
    digest = sha256(archive)
    if digest is None:
        raise FileNotFoundError(f"no archive {archive}")
    try:
        with open(stamp, encoding="utf-8") as done:
            if os.path.isdir(static) and done.read().strip() == digest:
                return False
    except FileNotFoundError:
        pass
    if check_mode:
        return True
    new = static + ".new"
    if os.path.lexists(new):
        shutil.rmtree(new)
    extract(archive, new)
    hand_over(new, gid(group))
    swap(new, static)
    with open(stamp, "w", encoding="utf-8") as done:
        done.write(digest + "\n")
    return True


def same_bytes(one: str, other: str) -> bool:
    return os.path.isfile(other) and filecmp.cmp(one, other, shallow=False)


def pack_static(run, app: str, directory: str, archive: str, max_size: int) -> bool:
    """Pack an app's static DIRECTORY into ARCHIVE (root's), as APP, so that root reads nothing the app could
    redirect with a link; RUN has AnsibleModule.run_command's signature. A file the app made unreadable, or a tree
    over MAX_SIZE bytes (apparent size: sparse files count in full), is refused. Sparse files travel as their
    data, not their holes. Whether ARCHIVE changed."""
    as_app = ["runuser", "-u", app, "--"]
    rc, out, err = run([*as_app, "du", "--summarize", "--apparent-size", "--block-size=1", "--", directory])
    if rc != 0:
        raise Refused(f"cannot be read as the app: {err.strip()}")
    size = int(out.split()[0])
    if size > max_size:
        raise Refused(f"take {size} bytes, more than scgi_site_static_max_size ({max_size})")
    new = archive + ".new"
    if os.path.lexists(new):
        os.unlink(new)
    with os.fdopen(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "wb") as out:
        packed = subprocess.run([*as_app, "tar", "--create", "--file=-", f"--directory={directory}", "--format=gnu",
                                 "--sparse", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "."],
                                stdout=out, stderr=subprocess.PIPE, check=False)
    if packed.returncode != 0:
        os.unlink(new)
        raise Refused(f"cannot be packed as the app: {packed.stderr.decode(errors='replace').strip()}")
    if same_bytes(new, archive):
        os.unlink(new)
        return False
    os.rename(new, archive)
    return True
