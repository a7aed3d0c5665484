"""The PEP 3333 environ the app gets, whatever the web server sent.

Checked against Apache 2.4 for every protocol and mount:

* mod_proxy_scgi and mod_proxy_fcgi send the whole decoded path as
  SCRIPT_NAME and no PATH_INFO; mod_proxy_ajp sends the (still
  percent-encoded) path as its request URI: the path is decoded once and
  split at ``--script-name``;
* mod_scgi (SCGIMount) splits it itself, at an internal prefix that
  mod_rewrite maps the public mount to: its PATH_INFO is kept and
  SCRIPT_NAME becomes ``--script-name``, the public mount (mod_scgi also
  follows a path-only Location itself: ``--absolute-redirects`` makes
  Locations absolute for it);
* a path outside ``--script-name`` reaches the app whole, SCRIPT_NAME empty.
"""

from __future__ import annotations

import io
import sys
from typing import Any, Callable


def split_mount(path: str, mount: str) -> tuple[str, str]:
    """Split a full request path into (SCRIPT_NAME, PATH_INFO) at the mount."""
    if path == mount or path.startswith(mount + "/"):
        return mount, path[len(mount) :]
    # Only reachable when the web server forwards more than the mount. The app
    # gets the real path under an empty SCRIPT_NAME and can answer 404 itself,
    # instead of a path with someone else's prefix cut off.
    return "", path


def pep3333_paths(
    environ: dict[str, Any], full_path: str, mount: str
) -> tuple[str, str]:
    """(SCRIPT_NAME, PATH_INFO) for the app; full_path is the decoded request path."""
    if environ.get("PATH_INFO"):
        # mod_scgi (SCGIMount) has split the path itself, at an internal prefix
        # (/.pyhost-scgi/blog) that mod_rewrite maps the public mount to. Its
        # PATH_INFO is right; the app must build its URLs on the public mount.
        return mount, environ["PATH_INFO"]
    return split_mount(full_path, mount)


def fix_environ(environ: dict[str, Any], full_path: str, mount: str) -> None:
    """Make flup's environ what PEP 3333 promises the app.

    full_path is the decoded request path and mount the public mount, both in
    PEP 3333's "bytes as latin-1 str" form."""
    # flup's SCGI gives a request without a body an io.StringIO: reading it
    # returns str where PEP 3333 requires bytes.
    if isinstance(environ["wsgi.input"], io.StringIO):
        environ["wsgi.input"] = io.BytesIO()
    # FastCGI's would be the web server's error log, shared by every app.
    environ["wsgi.errors"] = sys.stderr
    if not environ.get("QUERY_STRING"):
        environ["QUERY_STRING"] = environ.get("REQUEST_URI", "").partition("?")[2]
    environ["SCRIPT_NAME"], environ["PATH_INFO"] = pep3333_paths(
        environ, full_path, mount
    )


def absolute_redirects(application: Callable[..., Any]) -> Callable[..., Any]:
    """Make every path-only Location header absolute.

    Apache's mod_scgi treats a Location that starts with "/" as CGI's "local
    redirect": it serves the target itself, under the old URL, instead of
    sending the redirect to the browser (a POST-redirect-GET then stays on
    the POST's URL). Django and most frameworks send such path-only
    Locations, which RFC 9110 allows.
    """

    def with_absolute_location(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [
                (name, absolute_url(environ, value))
                if name.lower() == "location" and value.startswith("/") and not value.startswith("//")
                else (name, value)
                for name, value in headers
            ]
            return start_response(status, headers, exc_info)

        return application(environ, start)

    return with_absolute_location


def absolute_url(environ: dict[str, Any], path: str) -> str:
    """PEP 3333's URL reconstruction, for the scheme and host part."""
    scheme = environ["wsgi.url_scheme"]
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ["SERVER_NAME"]
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != {"https": "443", "http": "80"}.get(scheme):
            host += ":" + port
    return f"{scheme}://{host}{path}"
