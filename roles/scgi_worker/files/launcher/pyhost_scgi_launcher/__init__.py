"""Serve one WSGI application with flup, under systemd.

Django removed ``manage.py runfcgi`` in 1.9; this small program replaces it
for any WSGI callable (Django, Flask, ...). The pyhost.scgi collection builds
this package into one file (a zipapp, ``../build.py``), copies it into each
application's virtualenv as ``bin/pyhost-scgi-launcher`` and a systemd unit
(``Type=notify``, usually socket-activated) runs it. It speaks SCGI, FastCGI
or AJP 1.3, with a pool of processes (prefork) or threads.

flup 1.0.3 is the last release and has Python 3 defects that matter in
production. Rather than patching flup in place, the launcher subclasses its
servers and carries small, tested fixes, each next to the code it fixes.

The modules, in the order a request meets them:

* ``cli``: the command line; ``run()`` puts the pieces together;
* ``sockets`` and ``systemd``: the listening socket (Unix, TCP or inherited
  from socket activation) and sd_notify();
* ``servers``: which server serves, spelled out per protocol and method:
  protocol fixes + pool + flup's server, and the connection classes;
* ``pools``: the prefork and threaded main loops (flup's, rewritten where
  they were broken) and the serving lifecycle (signals, drain);
* ``protocols``: the fixes for flup's FastCGI and AJP;
* ``deadline``: a connection must deliver its request in --read-timeout;
* ``environ``: the PEP 3333 environ the app gets (SCRIPT_NAME and PATH_INFO
  whatever the web server sent; absolute redirects for mod_scgi);
* ``unavailable``: --retry-load's 503 answer while the app fails to import.

Each connection serves one request (Apache's mod_proxy_scgi and
mod_proxy_fcgi open one per request by default; AJP is told not to reuse it),
so a busy worker is a request in flight and --max-children bounds both.
"""

from __future__ import annotations

import logging

PROG = "pyhost-scgi-launcher"

log = logging.getLogger(PROG)


class LauncherError(Exception):
    """A problem the operator must fix; reported as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class AppLoadError(LauncherError):
    """The app's code failed: --retry-load retries these."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause  # the exception's type only: its text may hold secrets
