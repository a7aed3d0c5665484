# Copyright: pyhost.scgi contributors
# MIT License (see LICENSE)
"""The one place where the ``scgi_apps`` schema is checked and completed.

Every role of the collection reads the same list of apps. Checking it here,
once, in plain Python, means that a mistake is reported the same way by every
role (naming the app and the field) and before any task touches a host, and
that the values the roles derive from it (paths, sockets, URLs) cannot drift
apart between the worker and the Apache side.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import unicodedata
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

# The documentation of each filter is in NAME.yml next to this file
# (ansible-doc -t filter pyhost.scgi.NAME).

# Every per-app path and unit name on a host is derived here, and only here.
HOME_ROOT = "/srv/scgi"
CONFIG_ROOT = "/etc/scgi"
DEPLOY_ROOT = "/var/lib/pyhost-scgi"
# The apache role builds mod_scgi in DEPLOY_ROOT: no app may be named like it.
MOD_SCGI_DIR = f"{DEPLOY_ROOT}/mod_scgi"
COLLECTION_NAMES = frozenset({"mod_scgi"})
# Apache side: one vhost per site (a server_name), which includes the part of
# every app mounted under that host name from the site's directory.
SITES_AVAILABLE = "/etc/apache2/sites-available"
SITES_ENABLED = "/etc/apache2/sites-enabled"
SITE_PARTS_ROOT = "/etc/apache2/pyhost-scgi"
# Each HTTPS site's certificate and key, when they are the operator's files or
# made on the host (mod_md keeps the ones it obtains in its own store).
TLS_ROOT = "/etc/apache2/pyhost-scgi-tls"
# Apache's log directory (Debian's APACHE_LOG_DIR).
LOG_ROOT = "/var/log/apache2"
# The roots above, for the roles' host-wide tasks and the helpers they install
# ('config_root' | pyhost.scgi.scgi_path).
HOST_PATHS = {
    "config_root": CONFIG_ROOT,
    "mod_scgi_dir": MOD_SCGI_DIR,
    "sites_available": SITES_AVAILABLE,
    "sites_enabled": SITES_ENABLED,
    "site_parts_root": SITE_PARTS_ROOT,
    "tls_root": TLS_ROOT,
    # Staged by root, copied by each app into its virtualenv.
    "launcher": "/usr/local/lib/pyhost-scgi/pyhost-scgi-launcher",
}
# Every pattern is applied with fullmatch: `$` would let a trailing newline
# through, and these values end up in unit files and Apache configuration.
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,30}")
WSGI_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HOST_RE = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")
# A site's server_name names its files: no wildcard (those go in server_aliases).
SERVER_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*")
URL_PATH_RE = re.compile(r"/([A-Za-z0-9._~-]+/)*")
# An inventory group or host name, as scgi_apps' `workers` names them.
INVENTORY_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
TCP_RE = re.compile(r"(?P<host>127(\.\d{1,3}){3}|localhost|\[::1\]):(?P<port>\d{1,5})")
# One segment of a directory inside the app's home or code.
DIR_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# A systemd [Service] directive name, as unit_settings keys must be.
DIRECTIVE_RE = re.compile(r"[A-Z][A-Za-z0-9]*")
# source.git: where git may fetch from (no ext:: or other transports that run
# commands), and a branch, tag or commit (no option, no revision expression).
GIT_REPO_RE = re.compile(r"(https|ssh|git|file)://[^\s'\"\\]+|[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:[^\s'\"\\]+|[^\s'\"\\:]+")
GIT_VERSION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")
TLS_CERTIFICATES = ("self_signed", "files", "acme")

# The entries of an app's home that the layout uses (see the README's "What an
# app gets on its host"): static and media directories take none of them, since
# root writes in these (releases/history, say) and the app writes its media.
HOME_LAYOUT = ("code", "venv", "current", "releases", "venvs", "state")
# Upper bounds of the durations of scgi_apps, in seconds: a typo (milliseconds
# for seconds) must not mean "forever".
MAX_READ_TIMEOUT = 3600
MAX_DRAIN_TIMEOUT = 3600
MAX_HSTS = 2 * 365 * 86400

# Linux's default net.ipv4.ip_local_port_range starts here.
EPHEMERAL_PORTS_START = 32768

# Accounts every Debian host already has: an app named like one of them would
# take over a system identity.
RESERVED_NAMES = frozenset(
    "root daemon bin sys sync games man lp mail news uucp proxy www_data backup list irc gnats "
    "nobody systemd_network systemd_resolve systemd_timesync messagebus sshd apache apache2 "
    "_apt postgres mysql redis".split()
)

KNOWN_KEYS = frozenset(
    "name state server_name server_aliases source requirements packages wsgi django protocol method "
    "max_children max_requests listen mount apache_client static media env secret_env unit_settings "
    "memory_max cpu_quota tasks_max keep_data max_body read_timeout drain_timeout workers uid tls concurrency".split()
)

DEFAULTS: dict[str, Any] = {
    "state": "present",
    "server_aliases": [],
    "requirements": "requirements.txt",
    "packages": [],
    "django": None,
    "protocol": "scgi",
    "method": "prefork",
    "max_children": "auto",
    "max_requests": 0,
    "listen": "unix",
    "workers": None,
    "uid": None,
    "mount": "/",
    "apache_client": "proxy",
    "env": {},
    "secret_env": {},
    "unit_settings": {},
    "memory_max": None,
    "cpu_quota": None,
    "tasks_max": None,
    "keep_data": False,
    "max_body": "100M",
    "read_timeout": 60,
    "drain_timeout": 30,
    "tls": None,
    "concurrency": "auto",
}
# An app's share of Apache (concurrency): requests in flight to it at once.
MAX_CONCURRENCY = 10000
MEMORY_RE = re.compile(r"\d+[KMGT]?")
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
# Apache's LimitRequestBody takes at most 2 GiB.
MAX_BODY_LIMIT = 1 << 31
CPU_QUOTA_RE = re.compile(r"\d+%")
# The ids an app's user and group may be given (uid): Debian's system and user
# ranges, not root's nor the reserved ones from 60000 (nobody, systemd's).
UID_MIN = 100
UID_MAX = 59999


class AppError(AnsibleFilterError):
    """A mistake in one app's definition."""

    def __init__(self, app: str, field: str, message: str) -> None:
        super().__init__(f"scgi_apps: app '{app}', field '{field}': {message}")


def _relative_dir(app: str, field: str, value: Any) -> str:
    """A path below the app's home or code: plain names only, since it ends up in unit files and Apache's config."""
    if not isinstance(value, str) or not value.strip("/"):
        raise AppError(app, field, "must be a non-empty relative directory name")
    if value.startswith("/") or ".." in value.split("/"):
        raise AppError(app, field, f"'{value}' must stay inside the app's home (no leading '/', no '..')")
    segments = value.strip("/").split("/")
    if not all(DIR_SEGMENT_RE.fullmatch(segment) for segment in segments):
        raise AppError(app, field, f"{value!r} must be plain names joined by '/': letters, digits, '_', '-' and "
                       "'.' (not first), no '.', no spaces or control characters")
    return "/".join(segments)


def _url_path(app: str, field: str, value: Any) -> str:
    """A URL path in normal form: Apache matches Alias and ProxyPass on the path as clients send it, after it
    resolved '.' and '..' and merged '//', so any other spelling would never match."""
    if not isinstance(value, str) or not URL_PATH_RE.fullmatch(value):
        raise AppError(app, field, f"{value!r} must be a URL path that starts and ends with '/', like /static/")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise AppError(app, field, f"{value!r} must be in normal form: no '.' or '..' segment")
    return value


def _check_source(name: str, source: Any, source_root: str | None) -> dict[str, Any]:
    if not isinstance(source, dict):
        raise AppError(name, "source", "is required: a mapping with exactly one of 'path', 'archive' or 'git'")
    kinds = [kind for kind in ("path", "archive", "git") if source.get(kind)]
    if len(kinds) != 1:
        raise AppError(name, "source", f"needs exactly one of 'path', 'archive' or 'git', found {kinds or 'none'}")
    kind = kinds[0]
    if kind == "git":
        return _check_git(name, source["git"], source_root)
    checked = {"kind": kind, "location": str(source[kind])}
    if source_root is not None:
        checked["controller_path"] = _controller_source(name, f"source.{kind}", checked["location"], source_root,
                                                        directory=kind == "path")
    return checked


def _check_git(name: str, git: Any, source_root: str | None) -> dict[str, Any]:
    """A repository the controller clones, and the branch, tag or commit to deploy from it."""
    if not isinstance(git, dict) or set(git) - {"repo", "version"}:
        raise AppError(name, "source.git", "must be a mapping with 'repo' and 'version', like "
                       "{repo: 'https://git.example.org/blog.git', version: main}")
    repo, version = git.get("repo"), git.get("version", "HEAD")
    if not isinstance(repo, str) or repo.startswith("-") or not GIT_REPO_RE.fullmatch(repo):
        raise AppError(name, "source.git.repo", f"{repo!r} must be an https://, ssh://, git:// or file:// URL, "
                       "user@host:path, or a path on the controller")
    if re.match(r"https?://[^/@]*:[^/@]*@", repo):
        raise AppError(name, "source.git.repo", "must not carry a password or token: it would show in logs; "
                       "use the operator's SSH agent, an SSH deploy key or git's credential helper")
    if not isinstance(version, str) or not GIT_VERSION_RE.fullmatch(version) or ".." in version:
        raise AppError(name, "source.git.version", f"{version!r} must be a branch, a tag or a commit, like main")
    checked = {"kind": "git", "location": repo, "repo": repo, "version": version}
    if source_root is not None and "://" not in repo and "@" not in repo.split("/", 1)[0]:
        # A repository on the controller's disk, relative to the inventory like a path source.
        checked["repo"] = _controller_source(name, "source.git", repo, source_root, directory=True)
    return checked


def _controller_source(name: str, field: str, location: str, source_root: str, directory: bool) -> str:
    """The absolute path of a file or directory on the controller, which must be there to read."""
    path = os.path.normpath(os.path.join(source_root, location))
    found = os.path.isdir(path) if directory else os.path.isfile(path)
    if not found or not os.access(path, os.R_OK | (os.X_OK if directory else 0)):
        what = "a readable directory" if directory else "a readable file"
        raise AppError(name, field, f"{location!r} is not {what} on the controller (looked at {path})")
    return path


def _check_tls(name: str, tls: Any, source_root: str | None) -> dict[str, Any] | None:
    """HTTPS for the app's site: where its certificate comes from, the redirect and HSTS."""
    if tls is None or tls is False:
        return None
    if not isinstance(tls, dict):
        raise AppError(name, "tls", "must be a mapping like {certificate: self_signed}, or omitted for HTTP only")
    unknown = sorted(set(tls) - {"certificate", "cert", "key", "redirect", "hsts", "hsts_subdomains"})
    if unknown:
        raise AppError(name, f"tls.{unknown[0]}", "is not a known field (known: certificate, cert, key, redirect, "
                       "hsts, hsts_subdomains)")
    certificate = tls.get("certificate")
    if certificate not in TLS_CERTIFICATES:
        raise AppError(name, "tls.certificate", f"{certificate!r} must be one of {', '.join(TLS_CERTIFICATES)}")
    checked: dict[str, Any] = {
        "certificate": certificate,
        "redirect": _boolean(name, "tls.redirect", tls.get("redirect", True)),
        "hsts": _seconds(name, "tls.hsts", tls.get("hsts", 0), 0, MAX_HSTS),
        "hsts_subdomains": _boolean(name, "tls.hsts_subdomains", tls.get("hsts_subdomains", False)),
    }
    for field in ("cert", "key"):
        given = tls.get(field)
        if certificate != "files":
            if given is not None:
                raise AppError(name, f"tls.{field}", f"is for certificate: files, not {certificate}")
            continue
        if not isinstance(given, str) or not given or any(ord(char) < 32 for char in given):
            raise AppError(name, f"tls.{field}", "is required with certificate: files: the path of the PEM "
                           f"{'certificate (its chain after it)' if field == 'cert' else 'private key'} on the controller")
        checked[field] = (_controller_source(name, f"tls.{field}", given, source_root, directory=False)
                          if source_root is not None else given)
    if certificate == "files" and source_root is not None:
        _check_key_pair(name, checked["cert"], checked["key"])
    return checked


def _check_key_pair(name: str, cert: str, key: str) -> None:
    """The operator's certificate chain and key load together as a server's, as Apache would load them: on the
    controller, before any host changes (Apache's configuration test does not load keys)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise AppError(name, "tls.key", f"{key} is not the key of the certificate {cert}") from None
        raise AppError(name, "tls.cert", f"{cert} and {key} do not load as a PEM certificate chain and its "
                       f"unencrypted private key ({error.reason or error})") from None


def _check_django(name: str, django: Any) -> dict[str, Any] | None:
    if django is None:
        return None
    if not isinstance(django, dict) or not MODULE_RE.fullmatch(str(django.get("settings", ""))):
        raise AppError(name, "django.settings", "must name the app's settings module, like blog.settings")
    checked = {"settings": django["settings"]}
    for flag, default in (("migrate", True), ("collectstatic", True), ("debug", False)):
        checked[flag] = _boolean(name, f"django.{flag}", django.get(flag, default))
    return checked


def _boolean(name: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise AppError(name, field, f"{value!r} must be true or false")
    return value


def _seconds(name: str, field: str, value: Any, minimum: int, maximum: int) -> int:
    """A duration in whole seconds, bounded."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise AppError(name, field, f"{value!r} must be a whole number of seconds from {minimum} to {maximum}")
    return value


def _whole_number(name: str, field: str, value: Any, minimum: int) -> int:
    # bool is an int in Python: `max_children: true` must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AppError(name, field, f"{value!r} must be a whole number >= {minimum}")
    return value


def _check_listen(name: str, listen: Any) -> dict[str, Any]:
    if listen == "unix":
        return {"kind": "unix", "address": f"/run/scgi-{name}/{name}.sock"}  # in the app's runtime_dir
    # A port alone (4000, or "4000" as -e gives it): the address is the topology's (see _place).
    port_only = (isinstance(listen, int) and not isinstance(listen, bool)) or (isinstance(listen, str) and listen.isdigit())
    if port_only:
        listen = f"127.0.0.1:{listen}"
    match = TCP_RE.fullmatch(str(listen))
    if not match:
        raise AppError(name, "listen", f"{listen!r} must be 'unix', a port like 4000 or a loopback HOST:PORT "
                       "like 127.0.0.1:4000")
    port = int(match.group("port"))
    if not 1024 <= port <= 65535:
        raise AppError(name, "listen", f"port {port} must be between 1024 and 65535")
    # systemd's ListenStream= takes addresses, not names.
    host = "127.0.0.1" if match.group("host") == "localhost" else match.group("host")
    return {"kind": "tcp", "address": f"{host}:{port}", "host": host.strip("[]"), "port": port, "port_only": port_only}


def _check_workers(name: str, workers: Any) -> Any:
    """None (every worker host), an inventory group's name, or a list of host names."""
    if workers is None:
        return None
    if isinstance(workers, str):
        if not INVENTORY_NAME_RE.fullmatch(workers):
            raise AppError(name, "workers", f"{workers!r} must be an inventory group's name or a list of host names")
        return workers
    if not isinstance(workers, list) or not workers:
        raise AppError(name, "workers", "must be an inventory group's name or a non-empty list of host names")
    for host in workers:
        if not isinstance(host, str) or not INVENTORY_NAME_RE.fullmatch(host):
            raise AppError(name, "workers", f"{host!r} is not an inventory host name")
    if len(set(workers)) != len(workers):
        raise AppError(name, "workers", "names a host twice")
    return list(workers)


def _place(app: dict[str, Any], groups: dict[str, list[str]]) -> None:
    """Which worker hosts run the app, and whether its front ends reach it over the network.

    One host that is the only front end and the app's only worker keeps
    everything local: a Unix socket or loopback TCP, as on a single host.
    Otherwise the app listens on a port of its own, on each worker's private
    address (scgi_private_address), and every front end balances over them.
    """
    name = app["name"]
    pool = groups.get("scgi_workers", [])
    frontends = groups.get("scgi_frontends", [])
    spec = app["workers"]
    if spec is None:
        hosts = list(pool)
    elif isinstance(spec, str):
        if spec not in groups:
            raise AppError(name, "workers", f"there is no inventory group {spec!r}")
        hosts = groups[spec]
    else:
        hosts = spec
    strangers = [host for host in hosts if host not in pool]
    if strangers:
        raise AppError(name, "workers", f"{strangers[0]} is not in the group scgi_workers")
    if not hosts:
        raise AppError(name, "workers", "names no worker host")
    app["worker_hosts"] = [host for host in pool if host in hosts]
    app["remote"] = not (len(app["worker_hosts"]) == 1 and frontends == app["worker_hosts"])
    if app["remote"] and not (app["listen"]["kind"] == "tcp" and app["listen"]["port_only"]):
        raise AppError(name, "listen", f"the app runs on {', '.join(app['worker_hosts'])} for the front ends "
                       f"{', '.join(frontends) or '(none)'}: it must listen on a port of its own, like listen: 4000, "
                       "which each worker opens on its scgi_private_address to the front ends only")
    if app["remote"] and app["media"]["shared"] is None:
        raise AppError(name, "media.shared", f"the app runs on {', '.join(app['worker_hosts'])} for the front ends "
                       f"{', '.join(frontends) or '(none)'}: declare whether {app['media']['dir']} is one filesystem "
                       "mounted at that path on all of them (true: what the app writes there, every front end serves) "
                       "or holds nothing to serve (false)")
    if app["media"]["shared"] and len(app["worker_hosts"]) > 1 and app["uid"] is None:
        raise AppError(name, "uid", f"the app writes its shared {app['media']['dir']} from {', '.join(app['worker_hosts'])}: "
                       "its user must have the same id on each of them, like uid: 2001 (an id no user or group "
                       "of these hosts has)")
    if app["remote"]:
        if app["apache_client"] != "proxy":
            raise AppError(name, "apache_client", "mod_scgi cannot balance over worker hosts: an app that runs on "
                           "hosts other than its front ends uses apache_client: proxy")
        # Each front end balances over the app's workers (scgi_site writes the members).
        app["balancer"] = f"balancer://scgi-{name}"
        app["proxy_section"] = app["balancer"]
        app["proxy_url"] = f"{app['balancer']}{app['mount']}"


def _members(app: dict[str, Any], addresses: dict[str, str]) -> list[dict[str, Any]]:
    """The app's port on each of its worker hosts' private address, as the front ends reach it.

    Each member's url_host is the address as a URL writes it (an IPv6 one in
    brackets). The balancer (scgi_site), the front end's firewall and
    status.yml all read these.
    """
    members = []
    for host in app["worker_hosts"]:
        address = addresses.get(host) or ""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise AnsibleFilterError(
                f"scgi_apps: app '{app['name']}' runs on {host}, whose private address {address!r} is unknown or not an "
                "IP address: set scgi_private_address for it in the inventory, or let site.yml read the address of "
                "its default route") from None
        members.append({"host": host, "address": address, "port": app["listen"]["port"],
                        "url_host": f"[{address}]" if ip.version == 6 else address})
    return members


def _check_limits(name: str, app: dict[str, Any]) -> None:
    if app["memory_max"] is not None and not MEMORY_RE.fullmatch(str(app["memory_max"])):
        raise AppError(name, "memory_max", f"{app['memory_max']!r} must be bytes with an optional K, M, G or T, like 512M")
    if app["cpu_quota"] is not None and not CPU_QUOTA_RE.fullmatch(str(app["cpu_quota"])):
        raise AppError(name, "cpu_quota", f"{app['cpu_quota']!r} must be a percentage of one core, like 50% or 200%")
    if app["tasks_max"] is not None:
        _whole_number(name, "tasks_max", app["tasks_max"], 1)


def _check_env(name: str, field: str, env: Any) -> dict[str, str]:
    if not isinstance(env, dict):
        raise AppError(name, field, "must be a mapping of VARIABLE: value")
    for key, value in env.items():
        if not ENV_KEY_RE.fullmatch(str(key)):
            raise AppError(name, field, f"{key!r} is not a valid environment variable name")
        if any(char in str(value) for char in "\n\r\0"):
            raise AppError(name, f"{field}.{key}", "must be a single line")
    return {str(key): str(value) for key, value in env.items()}


def _body_size(name: str, value: Any) -> int:
    """Bytes, from a whole number or a size like 100M."""
    match = re.fullmatch(r"(\d+)([KMG]?)", str(value)) if not isinstance(value, bool) else None
    size = int(match.group(1)) * SIZE_UNITS[match.group(2)] if match else -1
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise AppError(name, "max_body", f"{value!r} must be a size from 1 byte to 2G, like 100M")
    return size


def _check_packages(name: str, packages: Any) -> None:
    """pip requirement strings: a leading '-' or a line break would make pip read an option or a second line."""
    if not isinstance(packages, list):
        raise AppError(name, "packages", "must be a list of pip requirement strings")
    for package in packages:
        if (not isinstance(package, str) or not package.strip() or package.lstrip().startswith("-")
                or any(ord(char) < 32 for char in package)):
            raise AppError(name, "packages", f"{package!r} must be one pip requirement, like 'requests>=2.31' "
                           "(no option, no line break)")


def _check_unit_settings(name: str, settings: Any) -> None:
    """Directives the operator adds to the unit: loosening is allowed, injecting more lines is not."""
    if not isinstance(settings, dict):
        raise AppError(name, "unit_settings", "must be a mapping of systemd [Service] directive: value")
    for key, value in settings.items():
        if not isinstance(key, str) or not DIRECTIVE_RE.fullmatch(key):
            raise AppError(name, "unit_settings", f"{key!r} is not a systemd directive name, like MemoryMax")
        for one in value if isinstance(value, list) else [value]:
            if not isinstance(one, (str, int)) or any(ord(char) < 32 for char in str(one)):
                raise AppError(name, f"unit_settings.{key}", f"{one!r} must be a single-line value (or a list of them)")


def _kept_in_home(name: str, app: dict[str, Any]) -> list[str]:
    """The entries of a removed app's home that stay: its media and state directories with keep_data, and a
    shared media directory always (the operator's filesystem, mounted there, holding what other hosts wrote)."""
    media = app.get("media") or {}
    if not isinstance(media, dict):
        raise AppError(name, "media", "must be a mapping with 'url' and 'dir'")
    media_dir = _relative_dir(name, "media.dir", media.get("dir", "media")).split("/", maxsplit=1)[0]
    shared = media.get("shared") is not None and _boolean(name, "media.shared", media["shared"])
    return sorted(({media_dir, "state"} if app["keep_data"] else set()) | ({media_dir} if shared else set()))


def _check_choice(name: str, app: dict[str, Any], field: str, choices: tuple[str, ...], later: str = "") -> None:
    if app[field] not in choices:
        hint = f" ({later})" if later else ""
        raise AppError(name, field, f"{app[field]!r} must be one of {', '.join(choices)}{hint}")


def _complete(raw: Any, source_root: str | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise AnsibleFilterError(f"scgi_apps: every item must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise AppError(str(name), "name", "must match ^[a-z][a-z0-9_]{0,30}$ (it names the system user and unit)")
    if name in RESERVED_NAMES:
        raise AppError(name, "name", "is a system account name on Debian hosts; choose another")
    if name in COLLECTION_NAMES:
        raise AppError(name, "name", f"is taken by the collection itself ({DEPLOY_ROOT}/{name}); choose another")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise AppError(name, unknown[0], f"is not a known field (known: {', '.join(sorted(KNOWN_KEYS))})")

    app = {**DEFAULTS, **raw}
    _check_choice(name, app, "state", ("present", "absent"))
    home = f"{HOME_ROOT}/{name}"
    app.update(
        home=home,
        # Links to the live release's code and virtualenv (pyhost.scgi.releases).
        code_dir=f"{home}/code",
        venv_dir=f"{home}/venv",
        releases_dir=f"{home}/releases",
        venvs_dir=f"{home}/venvs",
        state_dir=f"{home}/state",
        config_dir=f"{CONFIG_ROOT}/{name}",
        deploy_dir=f"{DEPLOY_ROOT}/{name}",
        runtime_dir=f"/run/scgi-{name}",
        service=f"scgi-{name}.service",
        socket_unit=f"scgi-{name}.socket",
        secret_env_keys=sorted(_check_env(name, "secret_env", app["secret_env"])),
    )
    del app["secret_env"]
    _boolean(name, "keep_data", app["keep_data"])
    # What removal spares (state absent, or a worker host that leaves the
    # app's pool): with keep_data, the user and group (so that the kept files
    # keep a meaningful owner) and these entries of the home.
    app["kept_in_home"] = _kept_in_home(name, app)
    if app["state"] == "absent":
        return app

    server_name = app.get("server_name")
    if not isinstance(server_name, str) or not SERVER_NAME_RE.fullmatch(server_name.lower()):
        raise AppError(name, "server_name", f"{server_name!r} must be a host name like blog.example.org "
                       "(wildcards go in server_aliases)")
    if not isinstance(app["server_aliases"], list):
        raise AppError(name, "server_aliases", "must be a list of host names")
    for alias in app["server_aliases"]:
        if not isinstance(alias, str) or not HOST_RE.fullmatch(alias):
            raise AppError(name, "server_aliases", f"{alias!r} is not a host name")
    # Host names are case-insensitive: compared and written in lower case.
    app["server_name"] = server_name.lower()
    app["server_aliases"] = sorted({alias.lower() for alias in app["server_aliases"]} - {app["server_name"]})
    app["source"] = _check_source(name, app.get("source"), source_root)
    if not isinstance(app.get("wsgi"), str) or not WSGI_RE.fullmatch(app["wsgi"]):
        raise AppError(name, "wsgi", f"{app.get('wsgi')!r} must be module:callable, like blog.wsgi:application")
    app["requirements"] = _relative_dir(name, "requirements", app["requirements"]) if app["requirements"] else ""
    _check_packages(name, app["packages"])
    app["django"] = _check_django(name, app["django"])
    if app["django"]:
        # The file of the app's SECRET_KEY, made once (pyhost.scgi.secret_keys) and read by its unit.
        app["django"]["secret_key"] = {"path": f"{app['config_dir']}/django-secret-key.env", "group": name}
    _check_choice(name, app, "protocol", ("scgi", "fcgi", "ajp"))
    _check_choice(name, app, "method", ("prefork", "threaded"))
    _check_choice(name, app, "apache_client", ("proxy", "mod_scgi"))
    if app["max_children"] != "auto" and (isinstance(app["max_children"], bool)
                                          or not isinstance(app["max_children"], int) or app["max_children"] < 1):
        raise AppError(name, "max_children", f"{app['max_children']!r} must be 'auto' or a whole number >= 1")
    _whole_number(name, "max_requests", app["max_requests"], 0)
    if app["concurrency"] != "auto" and (isinstance(app["concurrency"], bool) or not isinstance(app["concurrency"], int)
                                         or not 0 <= app["concurrency"] <= MAX_CONCURRENCY):
        raise AppError(name, "concurrency", f"{app['concurrency']!r} must be 'auto' or a whole number from 0 (no limit) "
                       f"to {MAX_CONCURRENCY}")
    _seconds(name, "read_timeout", app["read_timeout"], 1, MAX_READ_TIMEOUT)
    _seconds(name, "drain_timeout", app["drain_timeout"], 0, MAX_DRAIN_TIMEOUT)
    app["max_body"] = _body_size(name, app["max_body"])
    app["listen"] = _check_listen(name, app["listen"])
    app["workers"] = _check_workers(name, app["workers"])
    if isinstance(app["uid"], str) and app["uid"].isdigit():  # as -e gives it
        app["uid"] = int(app["uid"])
    if app["uid"] is not None and (isinstance(app["uid"], bool) or not isinstance(app["uid"], int)
                                   or not UID_MIN <= app["uid"] <= UID_MAX):
        raise AppError(name, "uid", f"{app['uid']!r} must be a whole number from {UID_MIN} to {UID_MAX}")
    if app["apache_client"] == "mod_scgi":
        if app["protocol"] != "scgi":
            raise AppError(name, "apache_client", f"mod_scgi speaks SCGI only, not protocol {app['protocol']!r}")
        if app["listen"]["kind"] != "tcp":
            raise AppError(name, "listen", "mod_scgi connects over TCP only: use a loopback HOST:PORT like 127.0.0.1:4000")
    app["mount"] = _url_path(name, "mount", app["mount"])
    app["script_name"] = app["mount"].rstrip("/")
    app["tls"] = _check_tls(name, app["tls"], source_root)
    if app["tls"] and app["tls"]["certificate"] == "acme" and any("*" in alias for alias in app["server_aliases"]):
        raise AppError(name, "server_aliases", "a wildcard name needs a DNS challenge, which mod_md cannot answer "
                       "here: list the names, or use tls.certificate files")
    app["site"] = _site(app)
    app["env"] = _check_env(name, "env", app["env"])
    _check_limits(name, app)
    _check_unit_settings(name, app["unit_settings"])

    for kind in ("static", "media"):
        given = app.get(kind) or {}
        if not isinstance(given, dict):
            raise AppError(name, kind, "must be a mapping with 'url' and 'dir'")
        directory = _relative_dir(name, f"{kind}.dir", given.get("dir", kind))
        if "/" in directory:
            raise AppError(name, f"{kind}.dir", f"{directory!r} must be one directory name, directly in the app's home")
        files = {
            "url": _url_path(name, f"{kind}.url", given.get("url", f"{app['mount']}{kind}/")),
            "dir": f"{home}/{directory}",
            "source": _relative_dir(name, f"{kind}.source", given["source"]) if given.get("source") else "",
        }
        if directory in HOME_LAYOUT:
            raise AppError(name, f"{kind}.dir", f"{directory!r} is a name the app's home already uses (all of them: "
                           f"{', '.join(HOME_LAYOUT)})")
        if kind == "media":
            # Many hosts: whether the operator shares the directory between them (see _place).
            files["shared"] = given.get("shared")
            if files["shared"] is not None:
                _boolean(name, "media.shared", files["shared"])
        app[kind] = files
    if app["static"]["source"] and app["django"] and app["django"]["collectstatic"]:
        raise AppError(name, "static.source", "is for apps without collectstatic; Django apps collect their static files")
    if app["media"]["source"]:
        raise AppError(name, "media.source", "is not a field: media holds what the app writes")
    if app["static"]["url"] == app["media"]["url"] or app["static"]["dir"] == app["media"]["dir"]:
        raise AppError(name, "media", "must use a URL and a directory different from static")

    scheme = app["protocol"]
    # The worker as mod_proxy names it: each app's is its own, so that a
    # <Proxy> section of it applies to this app's requests only.
    backend = f"{scheme}://{name}" if app["listen"]["kind"] == "unix" else f"{scheme}://{app['listen']['address']}"
    app["proxy_section"] = f"{backend}/"
    if app["listen"]["kind"] == "unix":
        app["proxy_url"] = f"unix:{app['listen']['address']}|{backend}{app['mount']}"
    else:
        app["proxy_url"] = f"{backend}{app['mount']}"
    # mod_scgi's SCGIMount serves a URL prefix of its own; mod_rewrite hands it
    # the app's public URLs that are not files, as in the classic recipe.
    app["scgi_mount"] = f"/.pyhost-scgi/{name}"
    app["warnings"] = _warnings(app)
    return app


def _site(app: dict[str, Any]) -> dict[str, str]:
    """Where Apache finds an app: the vhost of its server_name, and the app's own part of it.

    Apps under one host name share one vhost, which includes each app's part
    from the site's directory in file-name order: deeper mounts first, because
    Apache's Alias and ProxyPass take the first match (/blog/ before /).
    """
    stem = f"scgi-site-{app['server_name']}"
    parts_dir = f"{SITE_PARTS_ROOT}/{stem}"
    depth = app["mount"].count("/")
    return {
        "name": stem,
        "vhost_path": f"{SITES_AVAILABLE}/{stem}.conf",
        "parts_dir": parts_dir,
        "part": f"{parts_dir}/{999 - depth:03d}-scgi-{app['name']}.conf",
        # Apache has one error log per virtual host: the site's, each line
        # tagged with the app; each app has its own access log.
        "error_log": f"{LOG_ROOT}/{stem}-error.log",
        "access_log": f"{LOG_ROOT}/scgi-{app['name']}-access.log",
        # The key and the certificate (and its chain) in one file, replaced
        # whole: Apache never reads a key of one with a certificate of another.
        "tls_file": f"{TLS_ROOT}/{stem}.pem",
        # What pyhost.scgi.self_signed keeps there when tls.certificate is self_signed.
        "self_signed": {"path": f"{TLS_ROOT}/{stem}.pem", "names": [app["server_name"], *app["server_aliases"]]},
    }


def _warnings(app: dict[str, Any]) -> list[str]:
    port = app["listen"].get("port", 0)
    if port >= EPHEMERAL_PORTS_START:
        return [
            f"scgi_apps: app '{app['name']}', field 'listen': port {port} lies in Linux's ephemeral port range "
            f"({EPHEMERAL_PORTS_START}-60999): an outgoing connection can hold it at boot and the app then "
            "cannot listen; prefer a port below 32768 or listen: unix"
        ]
    return []


def _check_sites(apps: list[dict[str, Any]]) -> None:
    """Apps share a site by sharing its server_name, and then its aliases too: one vhost answers for them all."""
    site_of_host: dict[str, tuple[str, str]] = {}
    first_of_site: dict[str, dict[str, Any]] = {}
    for app in apps:
        if app["state"] != "present":
            continue
        site = app["server_name"]
        first = first_of_site.setdefault(site, app)
        for field, what in (("server_aliases", "aliases"), ("tls", "TLS settings")):
            if first[field] != app[field]:
                raise AppError(app["name"], field, f"apps under server_name {site} share one site and its "
                               f"{what}: must be {first[field]} as for app '{first['name']}', not {app[field]}")
        for host in [site, *app["server_aliases"]]:
            other_site, other = site_of_host.setdefault(host, (site, app["name"]))
            if other_site != site:
                field = "server_name" if host == site else "server_aliases"
                raise AppError(app["name"], field, f"{host} already belongs to the site {other_site} of app "
                               f"'{other}': to share it, use server_name {other_site}")
    _check_site_urls([app for app in apps if app["state"] == "present"])


def _check_site_urls(apps: list[dict[str, Any]]) -> None:
    """Within a site, Apache serves a static or media URL from the directory: no app's mount may lie under one
    (Alias would take its requests, the app would be unreachable), and no two apps may serve the same URL."""
    files_at: dict[tuple[str, str], str] = {}
    for app in apps:
        for kind in ("static", "media"):
            url = app[kind]["url"]
            other = files_at.setdefault((app["server_name"], url), app["name"])
            if other != app["name"]:
                raise AppError(app["name"], f"{kind}.url", f"{url} on {app['server_name']} is already served by "
                               f"app '{other}'")
            for mounted in apps:
                if mounted["server_name"] == app["server_name"] and mounted["mount"].startswith(url):
                    whose = "its own mount" if mounted is app else f"the mount of app '{mounted['name']}'"
                    raise AppError(app["name"], f"{kind}.url", f"{url} would hide {whose} ({mounted['mount']}) on "
                                   f"{app['server_name']}: Apache would serve files there instead of the app")


def _check_unique(apps: list[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for app in apps:
        if ("name", app["name"]) in seen:
            raise AppError(app["name"], "name", "is defined twice")
        seen[("name", app["name"])] = app["name"]
        if app["state"] != "present":
            continue
        keys = [("server_name+mount", f"{app['server_name']}{app['mount']}")]
        if app["uid"] is not None:
            keys.append(("uid", str(app["uid"])))
        if app["listen"]["kind"] == "tcp":
            keys.append(("listen", f"port {app['listen']['port']}"))
        for field, value in keys:
            other = seen.setdefault((field, value), app["name"])
            if other != app["name"]:
                raise AppError(app["name"], field, f"{value} is already used by app '{other}'")


def scgi_apps(apps: Any, warn: bool = False, source_root: str | None = None,
              groups: dict[str, list[str]] | None = None,
              addresses: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Return the checked and completed apps; raise naming the app and field on any mistake.

    With warn=True, risky but valid choices are also shown as Ansible warnings
    (the play does it once, in its first check, rather than in every role).
    With source_root, every present app's source must exist on the controller.
    With groups (the inventory's), each present app gets its worker_hosts and
    whether its front ends reach it over the network (remote). With addresses
    too (each host's private address, which check.yml reads), each app
    reached over the network gets its balancer members.
    """
    if not isinstance(apps, list):
        raise AnsibleFilterError("scgi_apps must be a list of apps")
    completed = [_complete(raw, source_root) for raw in apps]
    if groups is not None:
        for app in completed:
            if app["state"] == "present":
                _place(app, groups)
                if app["remote"] and addresses is not None:
                    app["members"] = _members(app, addresses)
    _check_unique(completed)
    _check_sites(completed)
    if warn:
        for app in completed:
            for message in app.get("warnings", []):
                Display().warning(message)
    return completed


def scgi_budgets(apps: list[dict[str, Any]], cpus: dict[str, int]) -> dict[str, int]:
    """How many requests each present app may have in flight through one front end at once, by app name.

    An app's concurrency, or with 'auto' twice what its workers serve at once: max_children on each of its
    worker hosts ('auto' there is the host's CPUs + 2, as the launcher counts; cpus maps each host to its
    CPU count). Up to its capacity a request is served at once, as many again wait in the app's socket for a
    free child (a burst), and Apache answers the rest 503 at once. An app with concurrency 0 has no budget and
    is left out.
    """
    budgets = {}
    for app in apps:
        if app["state"] != "present" or app["concurrency"] == 0:
            continue
        if app["concurrency"] != "auto":
            budgets[app["name"]] = app["concurrency"]
            continue
        hosts = app.get("worker_hosts") or [None]
        capacity = sum(app["max_children"] if app["max_children"] != "auto" else cpus.get(host, 1) + 2
                       for host in hosts)
        budgets[app["name"]] = 2 * capacity
    return budgets


def scgi_path(name: str) -> str:
    """A host-wide path of the collection's layout, by name (see HOST_PATHS)."""
    if name not in HOST_PATHS:
        raise AnsibleFilterError(f"scgi_path: no host path named {name!r} (known: {', '.join(sorted(HOST_PATHS))})")
    return HOST_PATHS[name]


def scgi_units(show: str) -> dict[str, dict[str, str]]:
    """The output of `systemctl show --property=Id,...  UNIT...` as {Id: {property: value}}.

    systemctl prints one block of NAME=VALUE lines per unit, blocks separated
    by an empty line, properties in its own order."""
    units = {}
    for block in show.strip().split("\n\n"):
        unit = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in unit:
            units[unit["Id"]] = unit
    return units


def scgi_not_loaded(show: str, apps: list[dict[str, Any]]) -> dict[str, str]:
    """The apps whose launcher reports that their code did not load, by name, each with a message for the run.

    show is what `systemctl show --property=Id,StatusText` printed for the apps' services; a launcher that
    could not import the app stays up, answering 503, with a status text starting "unavailable:".
    """
    units = scgi_units(show)
    not_loaded = {}
    for app in apps:
        status = units.get(app["service"], {}).get("StatusText", "")
        if status.startswith("unavailable:"):
            not_loaded[app["name"]] = (f"App {app['name']} did not load its code ({app['wsgi']}): "
                                       f"{printable(status)}. The traceback is in `journalctl -u {app['service']}`.")
    return not_loaded


# Text direction overrides and isolates (Unicode's "Trojan Source" characters): they reorder what a terminal shows.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """TEXT without the control characters a terminal acts on (escape sequences start with one: OSC 52 writes
    the clipboard, others erase lines), but newlines and tabs, nor the bidirectional ones. For what an app
    produced (pip's and its build steps' output, its file names, its import error) before a message shows it."""
    return "".join(char for char in text if char in "\n\t"
                   or (unicodedata.category(char) != "Cc" and char not in BIDI_CONTROLS))


def scgi_failures(left_out: dict[str, str], errors: list[str] | None = None,
                  not_loaded: dict[str, str] | None = None) -> str:
    """The message a run fails with when a step failed for some apps: each app and its step (left_out, by app
    name), each app whose code did not load (not_loaded, scgi_not_loaded's messages), then what the steps
    printed (errors), with no control characters, since the apps wrote it."""
    parts = [f"App {name}: {reason}." for name, reason in left_out.items()]
    parts += [printable(message) for message in (not_loaded or {}).values()]
    parts.append("The other apps were deployed.")
    parts += [printable(error) for error in errors or [] if error]
    return " ".join(parts)


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"scgi_apps": scgi_apps, "scgi_budgets": scgi_budgets, "scgi_failures": scgi_failures,
                "scgi_not_loaded": scgi_not_loaded, "scgi_path": scgi_path, "scgi_units": scgi_units}
