#!/usr/bin/python
# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""The address a host's default route leaves from, without iproute2."""

from __future__ import annotations

DOCUMENTATION = r"""
module: default_address
short_description: The address a host's default route leaves from, without iproute2
description:
  - Reads only. The IPv4 address the host's default route leaves from, as the kernel picks it for a datagram to an
    address behind that route (TEST-NET-1, RFC 5737). No packet is sent; connecting a UDP socket only picks the
    route.
  - Python, unlike iproute2 (which the fact C(ansible_default_ipv4) needs), is on every host Ansible manages.
extends_documentation_fragment: [pyhost.scgi.attributes.read_only]
author: pyhost.scgi contributors (@pyhost)
"""

EXAMPLES = r"""
- name: Read the default address of a host
  pyhost.scgi.default_address:
  register: default
"""

RETURN = r"""
address:
  description: The IPv4 address, dotted.
  returned: success
  type: str
  sample: 172.18.0.2
"""

import socket

from ansible.module_utils.basic import AnsibleModule

# TEST-NET-1 (RFC 5737): no host has it, and the default route leads to it.
BEHIND_THE_DEFAULT_ROUTE = ("192.0.2.1", 9)


def default_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(BEHIND_THE_DEFAULT_ROUTE)
        return probe.getsockname()[0]


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    try:
        address = default_address()
    except OSError as exc:
        module.fail_json(msg=f"this host has no IPv4 default route: {exc.strerror}")
    module.exit_json(changed=False, address=address)


if __name__ == "__main__":
    main()
