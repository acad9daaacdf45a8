"""The addresses to share the demo by: every local network address, the host name, a public URL.

Browsers give the microphone only to secure pages (https, or http://localhost), so a link for
another device must be https: ``run.py --https`` makes a self-signed certificate whose names
cover all of these, and prints them.
"""
from __future__ import annotations

import ipaddress
import socket


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses other people on its networks can reach (no loopback)."""
    found: list[str] = []
    try:
        import psutil  # optional: lists every interface

        for addrs in psutil.net_if_addrs().values():
            found += [a.address for a in addrs if a.family == socket.AF_INET]
    except ImportError:
        found += _addresses_without_psutil()
    usable = []
    for address in dict.fromkeys(found):
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast):
            usable.append(address)
    return usable


def _addresses_without_psutil() -> list[str]:
    out = []
    try:  # the address the default route leaves by (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            out.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        out += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    try:  # Linux: every address of every interface
        import fcntl
        import struct

        for _, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
                out.append(socket.inet_ntoa(packed[20:24]))
    except (OSError, ImportError, AttributeError):
        pass
    return out


def certificate_names(host: str) -> list[str]:
    """Names a self-signed certificate for ``host`` should cover (listening on all interfaces: all)."""
    names = ["localhost", "127.0.0.1"]
    if host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), *local_addresses()]
    else:
        names.insert(0, host)
    return list(dict.fromkeys(names))


def share_urls(host: str, port: int, https: bool, public_url: str | None = None) -> list[str]:
    """The links to send, best first: the public URL, then each network address, then this machine."""
    scheme = "https" if https else "http"
    urls = [public_url.rstrip("/") + "/"] if public_url else []
    if host in ("0.0.0.0", "::", ""):
        urls += [f"{scheme}://{a}:{port}/" for a in local_addresses()]
        urls += [f"{scheme}://{socket.gethostname()}:{port}/"]
    elif host not in ("127.0.0.1", "localhost", "::1"):
        urls.append(f"{scheme}://{host}:{port}/")
    urls.append(f"{scheme}://localhost:{port}/")
    return list(dict.fromkeys(urls))
