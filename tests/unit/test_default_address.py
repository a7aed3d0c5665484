"""pyhost.scgi.default_address, the module that reads the address the default route leaves from: the kernel's
answer, the same as iproute2's where iproute2 is installed."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from conftest import plugin

default_address = plugin("modules/default_address.py")


def test_the_address_the_default_route_leaves_from() -> None:
    address = ipaddress.ip_address(default_address.default_address())
    assert address.version == 4 and not address.is_unspecified and not address.is_loopback
    if shutil.which("ip"):
        route = subprocess.run(["ip", "-4", "route", "get", "192.0.2.1"], capture_output=True, text=True, check=True)
        assert f" src {address} " in route.stdout + " "
