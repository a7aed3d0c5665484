# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Each app's virtualenvs: made and filled as the app, in its sandbox (the pyhost.scgi.venvs and venv_state
modules).

A virtualenv lives in the app's venvs directory (root's), named after what pip installs into it. It exists once
its Python does (NAME/bin/python), and is ready once pip has filled it (NAME.ready beside it, root's, written by
pyhost.scgi.releases). venv and pip run through scgi-run: as the app's user, in its sandbox, with the virtualenv
writable and (for pip) the network open, so that a package's build scripts never run as root nor outside the
sandbox.
"""

from __future__ import annotations

import compileall
import glob
import os
import pwd
import shutil
import zipfile

from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused

SCGI_RUN = "/usr/local/sbin/scgi-run"


def exists(venvs_dir, name):
    return os.path.lexists(f"{venvs_dir}/{name}/bin/python")


def ready(venvs_dir, name):
    return os.path.lexists(f"{venvs_dir}/{name}.ready")


def checked(run, argv, what):
    """Run ARGV with RUN (AnsibleModule.run_command's signature); its output, or Refused naming WHAT."""
    rc, out, err = run(argv)
    if rc != 0:
        raise Refused(f"{what} failed:\n{(out + err).strip()}")
    return out


def stage_pip(wheel, target, check_mode=False):
    """Unpack Debian's pip WHEEL into TARGET and byte-compile it, once; remove the copies of an older pip beside
    it (pip-*). Whether anything changed."""
    changed = False
    if not os.path.isfile(f"{target}/pip/__main__.py"):
        changed = True
        if not check_mode:
            new = target + ".new"
            shutil.rmtree(new, ignore_errors=True)
            os.mkdir(new, 0o755)
            with zipfile.ZipFile(wheel) as unpacked:
                unpacked.extractall(new)
            # From the wheel itself, each app's Python would compile pip anew in every run (1.8 s instead of 0.6).
            if not compileall.compile_dir(new, quiet=1):
                raise Refused(f"{wheel} could not be byte-compiled")
            os.rename(new, target)
    for old in glob.glob(f"{os.path.dirname(target)}/pip-*"):
        if old != target and os.path.isdir(old) and not os.path.islink(old):
            changed = True
            if not check_mode:
                shutil.rmtree(old)
    return changed


def create(run, app, venv, release):
    """Make the virtualenv VENV (a path in the app's venvs directory), without pip, as APP, in RELEASE's sandbox.
    Root makes the directory (venvs is root's) and gives it to the app; what a failed run left there goes."""
    if os.path.lexists(venv):
        shutil.rmtree(venv)
    user = pwd.getpwnam(app)
    os.mkdir(venv, 0o750)
    os.chown(venv, user.pw_uid, user.pw_gid)
    checked(run, [SCGI_RUN, "--release", release, "--writable", venv, app, "python3", "-m", "venv", "--without-pip", venv],
            "venv")


def install(run, app, venv, release, pip, requirements):
    """Install the REQUIREMENTS files into VENV with PIP (Debian's, staged), as APP, in RELEASE's sandbox with the
    network open; then close to other users what kept its source's mode whatever the umask (venv's activate
    scripts, some console scripts)."""
    sandbox = [SCGI_RUN, "--release", release, "--writable", venv]
    checked(run, [*sandbox, "--network", app, f"{venv}/bin/python", pip, "install", "--no-input", "--no-cache-dir",
                  "--disable-pip-version-check", *(f"--requirement={path}" for path in requirements)], "pip")
    checked(run, [*sandbox, app, "find", venv, "-perm", "/o=rwx", "!", "-type", "l", "-exec", "chmod", "o=", "{}", "+"],
            "closing the virtualenv to other users")


def install_launcher(run, app, source, target, check_mode=False):
    """Copy the launcher SOURCE (root's, staged) to TARGET in the app's virtualenv, as APP: root never writes into
    a tree the app owns. Whether it changed."""
    if run(["runuser", "-u", app, "--", "cmp", "-s", source, target])[0] == 0:
        return False
    if not check_mode:
        checked(run, ["runuser", "-u", app, "--", "install", "-m", "0640", source, target], "installing the launcher")
    return True
