# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""The code archive of each app, made on the controller (the pyhost.scgi.code_archives action; its documentation
is plugins/modules/code_archives.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.pyhost.scgi.plugins.module_utils.files import sha256

SSH_COMMAND = "ssh -o ConnectTimeout=30 -o ServerAliveInterval=15 -o ServerAliveCountMax=2"

# GNU tar, as every controller has it: owners and order normalised, so that an unchanged tree gives the same
# archive (and the same release) and the play stays idempotent.
PACK = ["tar", "--create", "--format=gnu", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
        "--exclude-vcs", "--exclude=__pycache__", "--exclude=*.pyc"]


def operator_credential_helpers(environ):
    """The credential helpers of the operator's own git configuration, in order."""
    found = subprocess.run(["git", "config", "--global", "--get-all", "credential.helper"],
                           capture_output=True, text=True, check=False, env=dict(environ))
    return found.stdout.splitlines() if found.returncode == 0 else []


def git_environment(environ):
    """ENVIRON for git runs on a tenant's repository. The repository is a tenant's: git runs with none of the
    operator's git configuration (global or system), whose filters (LFS among them) a tenant's .gitattributes
    would otherwise run on the controller, and with no hooks. Only the operator's credential helpers are carried
    over; the SSH agent and keys work as usual. Transports that run a command of the URL's choosing are refused,
    git never prompts, and a server that stops sending or trickles bytes fails the app's fetch instead of holding
    the run: over HTTP(S), below 1 KB/s for 30 s; over SSH, no answer to connect within 30 s or to keep-alives for
    30 s (unless the operator's own GIT_SSH_COMMAND says otherwise)."""
    settings = [("core.hooksPath", os.devnull),
                *(("credential.helper", helper) for helper in operator_credential_helpers(environ))]
    env = {name: value for name, value in environ.items() if not name.startswith("GIT_CONFIG")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_COUNT=str(len(settings)),
               GIT_ALLOW_PROTOCOL="https:ssh:git:file", GIT_TERMINAL_PROMPT="0",
               GIT_HTTP_LOW_SPEED_LIMIT="1000", GIT_HTTP_LOW_SPEED_TIME="30",
               GIT_SSH_COMMAND=environ.get("GIT_SSH_COMMAND") or SSH_COMMAND)
    for number, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{number}"], env[f"GIT_CONFIG_VALUE_{number}"] = key, value
    return env


class Failed(Exception):
    """One app's source that cannot be archived: the message says why."""


def git_archive(scratch, app, repository, version, env):
    """Archive VERSION (a branch, a tag or a commit) of the app's REPOSITORY, through a bare clone in
    SCRATCH/git-APP, as SCRATCH/git-APP.tar; its commit."""
    clone = os.path.join(scratch, f"git-{app}")
    if os.path.lexists(clone):
        shutil.rmtree(clone)

    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False, env=dict(env),
                              stdin=subprocess.DEVNULL)

    cloned = git("clone", "--quiet", "--bare", "--", repository, clone)
    if cloned.returncode != 0:
        raise Failed(f"app {app}: git could not clone {repository} (source.git.repo): {cloned.stderr.strip()}")
    found = git("-C", clone, "rev-parse", "--verify", "--quiet", f"{version}^{{commit}}")
    if found.returncode != 0:
        raise Failed(f"scgi_apps: app '{app}', field 'source.git.version': {version} is not a branch, tag or commit "
                     f"of {repository}")
    commit = found.stdout.strip()
    archived = git("-C", clone, "archive", "--format=tar", f"--output={clone}.tar", commit)
    if archived.returncode != 0:
        raise Failed(f"app {app}: git could not archive {commit} of {repository}: {archived.stderr.strip()}")
    return commit


def git_archives(scratch, sources, environ):
    """commits and failed_apps, as the documentation's RETURN describes them, for SOURCES ({app: (repository,
    version)}); one app's source that cannot be fetched fails that app alone."""
    if sources and shutil.which("git") is None:
        raise AnsibleActionFail("source.git needs git on the controller: install it (apt install git)")
    env = git_environment(environ)
    commits, failed = {}, {}
    for app, (repository, version) in sources.items():
        try:
            commits[app] = git_archive(scratch, app, repository, version, env)
        except Failed as exc:
            failed[app] = str(exc)
    return commits, failed


def pack(scratch, host, apps):
    """The archive of each app (a source directory packed into SCRATCH/HOST-APP.tar; an archive source or a git
    source's archive as it is), its sha256 and the release it makes: {app: {archive, sha256, release}}."""
    archives = {}
    for app in apps:
        name, source = app["name"], app["source"]
        if source["kind"] == "path":
            archive = os.path.join(scratch, f"{host}-{name}.tar")
            packed = subprocess.run([*PACK, f"--file={archive}", f"--directory={source['controller_path']}", "."],
                                    capture_output=True, text=True, check=False)
            if packed.returncode != 0:
                raise AnsibleActionFail(f"app {name}: its source directory could not be packed: {packed.stderr.strip()}")
        elif source["kind"] == "git":
            archive = os.path.join(scratch, f"git-{name}.tar")
        else:
            archive = source["controller_path"]
        digest = sha256(archive)
        if digest is None:
            raise AnsibleActionFail(f"app {name}: there is no archive {archive} on the controller")
        archives[name] = {"archive": archive, "sha256": digest, "release": digest[:16]}
    return archives


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True  # it writes into the run's scratch directory on the controller only

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _spec, args = self.validate_argument_spec(argument_spec={
            "action": {"type": "str", "required": True, "choices": ["git", "pack"]},
            "scratch": {"type": "path", "required": True},
            "apps": {"type": "list", "elements": "dict", "required": True},
            "pinned": {"type": "dict", "default": {}},
        })
        if args["action"] == "git":
            sources = {app["name"]: (app["source"]["repo"], args["pinned"].get(app["name"]) or app["source"]["version"])
                       for app in args["apps"]}
            result["commits"], result["failed_apps"] = git_archives(args["scratch"], sources, os.environ)
        else:
            result["archives"] = pack(args["scratch"], task_vars["inventory_hostname"], args["apps"])
        result["changed"] = False
        return result
