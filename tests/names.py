"""
Test-only host names: ``socket.getaddrinfo`` (the system's resolver, not our code) answering for names under
``wan-dns.test`` from a table, and a self-signed certificate for such a name. Shared by the tests of links whose
host NAME leads somewhere (tests/transfer/test_dns_links.py, tests/modes/test_upload_hosts.py).
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Mapping
from pathlib import Path
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


def certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the DNS name ``name`` only (no IP address), and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "name.pem", folder / "name.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file
