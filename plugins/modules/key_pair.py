#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""Install a site's private key and certificate chain in one file, only once they load as a pair."""

from __future__ import annotations

DOCUMENTATION = r"""
module: key_pair
short_description: Install a site's private key and certificate chain in one file, only once they load as a pair
description:
  - Writes the key, then the certificate and its chain, to one file of root's (owner and group), mode 0600, made
    anew when its content, owner, group or mode differ. Apache reads it whole,
    so that it never pairs a key with another key's certificate.
  - A new file replaces the live one only once Python's C(ssl) loads it as a server's key and certificate chain,
    because Apache's configuration test does not load keys and a reload with a mismatched pair would stop Apache.
    The new file is written beside the old one and renamed over it; a file that fails is never installed.
  - Never follows a symbolic link in the file's place. The key is never returned, shown or logged.
options:
  path: {description: Absolute path of the file; its directory must exist., type: path, required: true}
  key:
    description: The private key (PEM, not encrypted).
    type: str
    required: true
  chain: {description: The certificate and then its chain (PEM)., type: str, required: true}
attributes:
  check_mode:
    description: Reports whether the file would change, and writes nothing; the pair is loaded all the same.
    support: full
extends_documentation_fragment: [pyhost.scgi.attributes.secret]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Install the operator's key and certificate of a site
  pyhost.scgi.key_pair:
    path: /etc/apache2/pyhost-scgi-tls/scgi-site-example.org.pem
    key: "{{ lookup('ansible.builtin.file', 'tls/example.org.key') }}"
    chain: "{{ lookup('ansible.builtin.file', 'tls/example.org.crt') }}"
"""

RETURN = r"""
path:
  description: The file.
  returned: always
  type: str
"""

import os
import ssl
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyhost.scgi.plugins.module_utils.files import Refused


def content_of(key, chain):
    # As the file lookup reads them (trailing white space stripped), each ending its line.
    return f"{key.rstrip()}\n{chain.rstrip()}\n".encode("utf-8")


def current(path):
    """The bytes of the file at path, or None when there is none or it is not root's alone (owner, group, 0600):
    anything but a regular file is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Refused(f"{path} is not a regular file: refusing to read or replace it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as found:
        info = os.fstat(found.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{path} is not a regular file: refusing to read or replace it")
        if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (os.geteuid(), os.getegid(), 0o600):
            return None
        return found.read()


def install(path, key, chain, check_mode):
    """Whether the file at path changes (or would, in check mode)."""
    content = content_of(key, chain)
    directory, name = os.path.split(path)
    if check_mode and not os.path.isdir(directory):
        directory = None  # a host that has no such directory yet: the pair is loaded from the temporary directory
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as new:
            os.fchmod(new.fileno(), 0o600)
            new.write(content)
            new.flush()
            os.fsync(new.fileno())
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(temporary)
        except (ssl.SSLError, ValueError) as exc:
            raise Refused(f"{path}: the key and certificate chain do not load as a pair ({exc})") from None
        if current(path) == content:
            return False
        if not check_mode:
            os.replace(temporary, path)
        return True
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "key": {"type": "str", "required": True, "no_log": True},
            "chain": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    try:
        changed = install(module.params["path"], module.params["key"], module.params["chain"], module.check_mode)
    except (Refused, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, path=module.params["path"])


if __name__ == "__main__":
    main()
