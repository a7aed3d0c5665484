#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Keep a self-signed key and certificate for each of many sites, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: self_signed
short_description: Keep a self-signed key and certificate for each of many sites, in one call
description:
  - For the sites of pyhost.scgi whose C(tls.certificate) is C(self_signed), one file per site with its
    private key (EC P-256) and then its certificate, which Apache reads whole, so that it never pairs a key
    with another key's certificate.
  - A file is kept while its certificate covers exactly the site's names and has more than
    O(renew_days) days left; otherwise a new key and certificate replace it, made with C(openssl) on the
    host (the key never leaves the host), written with mode 0600 beside it and renamed over it.
  - Never follows a symbolic link in the file's place, and refuses a name that is not a host name.
options:
  certificates:
    description: One entry per site.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {description: Absolute path of the file; its directory must exist., type: str, required: true}
      names:
        description: The site's host names, its own first (the certificate's subject), then its aliases.
        type: list
        elements: str
        required: true
  days:
    description: How many days a new certificate is valid.
    type: int
    default: 825
  renew_days:
    description: A certificate with this many days left or fewer is made anew.
    type: int
    default: 30
attributes:
  check_mode:
    description: Reports which files would be made anew, and makes none.
    support: full
extends_documentation_fragment: [pyhost.scgi.attributes.secret]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Make a self-signed certificate for each site that asks for one
  pyhost.scgi.self_signed:
    certificates:
      - {path: /etc/apache2/pyhost-scgi-tls/scgi-site-demo.test.pem, names: [demo.test, www.demo.test]}
"""

RETURN = r"""
changed_paths:
  description: The files made anew (or that would be, in check mode), in the order given.
  returned: always
  type: list
  elements: str
"""

import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused, regular_file

# A host name or a wildcard one, as the scgi_apps filter admits them: nothing that openssl's -subj or -addext
# would read as syntax ("/", ",", "=").
HOST_NAME = re.compile(r"(\*\.)?[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)*")


def covered_names(path, renew_days, run_command):
    """The DNS names of the certificate in the file at path, or None when it must be made anew (no file, no
    certificate, or one with renew_days days left or fewer)."""
    if regular_file(path) is None:
        return None
    status, _out, _err = run_command(["openssl", "x509", "-in", path, "-noout", "-checkend", str(renew_days * 86400)])
    if status != 0:
        return None
    status, out, _err = run_command(["openssl", "x509", "-in", path, "-noout", "-ext", "subjectAltName"])
    if status != 0:
        return None
    # "X509v3 Subject Alternative Name: \n    DNS:a.example, DNS:b.example"
    lines = out.splitlines()[1:2]
    return {name.strip()[len("DNS:"):] for name in lines[0].split(",")} if lines else set()


def make(path, names, days, run_command):
    """A new key and certificate for names in the file at path, replacing it at once."""
    directory = os.path.dirname(path)
    work = tempfile.mkdtemp(dir=directory, prefix=".self-signed.")
    try:
        key, cert, pem = (os.path.join(work, part) for part in ("key", "cert", "pem"))
        status, out, err = run_command([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", str(days), "-subj", f"/CN={names[0]}",
            "-addext", "subjectAltName=" + ",".join(f"DNS:{name}" for name in names),
            "-keyout", key, "-out", cert])
        if status != 0:
            raise Refused(f"{path}: openssl could not make a key and certificate: {(err or out).strip()}")
        fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as new:
            for part in (key, cert):
                with open(part, "rb") as source:
                    new.write(source.read())
            new.flush()
            os.fsync(new.fileno())
        os.replace(pem, path)
    finally:
        shutil.rmtree(work)


def apply(certificates, check_mode, run_command, days=825, renew_days=30):
    """The paths made anew (or that would be, in check mode)."""
    for entry in certificates:
        if not entry["names"]:
            raise Refused(f"{entry['path']}: no names")
        for name in entry["names"]:
            if not HOST_NAME.fullmatch(name):
                raise Refused(f"{entry['path']}: {name!r} is not a host name")
    changed = []
    for entry in certificates:
        if covered_names(entry["path"], renew_days, run_command) == set(entry["names"]):
            continue
        changed.append(entry["path"])
        if not check_mode:
            make(entry["path"], entry["names"], days, run_command)
    return changed


def main():
    module = AnsibleModule(
        argument_spec={
            "certificates": {"type": "list", "elements": "dict", "required": True, "options": {
                "path": {"type": "str", "required": True},
                "names": {"type": "list", "elements": "str", "required": True},
            }},
            "days": {"type": "int", "default": 825},
            "renew_days": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    try:
        changed = apply(module.params["certificates"], module.check_mode, module.run_command,
                        module.params["days"], module.params["renew_days"])
    except (Refused, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(changed), changed_paths=changed)


if __name__ == "__main__":
    main()
