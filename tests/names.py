"""
Test-only host names: ``socket.getaddrinfo`` (the system's resolver, not our code) answering for names under
``wan-dns.test`` from a table (a certificate for such a name: tests/certificates.py). Shared by the tests of links
whose host NAME leads somewhere (tests/transfer/test_dns_links.py, tests/modes/test_upload_hosts.py).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pytest

DOMAIN = "wan-dns.test"


def resolve_test_names(monkeypatch: pytest.MonkeyPatch, names: Mapping[str, str]) -> None:
    """
    Make ``socket.getaddrinfo`` answer for ``*.wan-dns.test`` from ``names`` (name -> IPv4 address); a name of the
    domain not in the table does not resolve; every other name resolves as before.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(DOMAIN):
            return real(host, port, *args, **kwargs)
        if name not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (names[name], int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
