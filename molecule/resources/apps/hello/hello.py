"""A framework-free WSGI application used by the pyhost.scgi molecule scenarios.

Standard library only. Routes on PATH_INFO:

* ``/redirect``: 302 to the absolute URL ``<mount>/target``, rebuilt from the
  request as PEP 3333 describes (so it keeps the mount prefix);
* anything else: 200 JSON describing the request and the serving process.

The start-up tests steer its import with a file ``state/start-control`` in the
app's home: ``fail`` makes the import fail, ``sleep N`` makes it take N seconds.
"""

import itertools
import json
import os
import pwd
import socket
import threading
import time
from urllib.parse import parse_qs, quote

# Requests this process has served: shows when a worker process is replaced.
_served = itertools.count(1)


def _start_as_told():
    control = os.path.join(os.environ.get("STATE_DIRECTORY", "/nonexistent"), "start-control")
    try:
        with open(control, encoding="utf-8") as told:
            words = told.read().split()
    except FileNotFoundError:
        return
    if words == ["fail"]:
        raise RuntimeError("told to fail at start by " + control)
    if len(words) == 2 and words[0] == "sleep":
        time.sleep(float(words[1]))


_start_as_told()


def _release():
    """The content of release.txt beside this file, if any: the deploy tests tell releases apart by it."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "release.txt"), encoding="utf-8") as file:
            return file.read().strip()
    except FileNotFoundError:
        return None


RELEASE = _release()


def _wsgi_to_text(value):
    """Decode a PEP 3333 "native string" (latin-1 carrying bytes) as UTF-8."""
    return value.encode("latin-1").decode("utf-8", errors="replace")


def _process_user():
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read_body(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    return environ["wsgi.input"].read(length)


def _host_url(environ):
    """Scheme, host and port of the request (PEP 3333, URL reconstruction)."""
    scheme = environ["wsgi.url_scheme"]
    url = scheme + "://"
    if environ.get("HTTP_HOST"):
        url += environ["HTTP_HOST"]
    else:
        url += environ["SERVER_NAME"]
        port = str(environ.get("SERVER_PORT", ""))
        if scheme == "https":
            if port and port != "443":
                url += ":" + port
        elif port and port != "80":
            url += ":" + port
    return url


def _json(start_response, payload):
    body = json.dumps(payload).encode("utf-8")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def _sleep(environ, start_response):
    """Hold the worker for ?seconds= (at most 5), then say who served it and when."""
    started = time.time()
    seconds = parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["1"])[0]
    time.sleep(min(float(seconds), 5.0))
    return _json(
        start_response,
        {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "served": next(_served),
            "release": RELEASE,
            "started": started,
            "ended": time.time(),
        },
    )


def application(environ, start_response):
    path_info = environ.get("PATH_INFO", "")

    if path_info == "/sleep":
        return _sleep(environ, start_response)

    if path_info == "/redirect":
        location = (
            _host_url(environ)
            + quote(environ.get("SCRIPT_NAME", "").encode("latin-1"))
            + "/target"
        )
        start_response(
            "302 Found",
            [
                ("Location", location),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", "0"),
            ],
        )
        return [b""]

    payload = {
        "app": "hello",
        "method": environ.get("REQUEST_METHOD", ""),
        "script_name": _wsgi_to_text(environ.get("SCRIPT_NAME", "")),
        "path_info": _wsgi_to_text(path_info),
        "query": environ.get("QUERY_STRING", ""),
        "body": _read_body(environ).decode("utf-8", errors="replace"),
        "user": _process_user(),
        "uid": os.geteuid(),
        "pid": os.getpid(),
        # Which worker host served the request (many hosts: the balancer's choice).
        "host": socket.gethostname(),
        # What the deployment put into the environment; a secret's value is never echoed.
        "greeting": os.environ.get("HELLO_GREETING"),
        "release": RELEASE,
        "has_token": bool(os.environ.get("HELLO_TOKEN")),
        # What the server says about the client's connection (HTTPS behind mod_ssl).
        "url_scheme": environ["wsgi.url_scheme"],
        "https": environ.get("HTTPS"),
    }
    return _json(start_response, payload)
