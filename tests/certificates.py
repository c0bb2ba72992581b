"""
Self-signed certificates for the tests' https servers on 127.0.0.1: one builder for a certificate naming a DNS name
(tests/names.py's test host names), an IP address, or both. A test trusts it the way users add a CA (``verify=``,
``REQUESTS_CA_BUNDLE``); as its own CA it is valid for an hour.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def self_signed_certificate(
    folder: Path, *, dns_name: str | None = None, ip_address: str | None = None
) -> tuple[Path, Path]:
    """
    A self-signed certificate and its key, written as ``certificate.pem`` and ``certificate.key`` in ``folder``.

    :param folder: where the two PEM files go (one certificate per folder: a second call replaces the first)
    :param dns_name: the DNS name the certificate is for (default: none); also its common name
    :param ip_address: the IP address the certificate is for (default: none); its common name without a DNS name
    :return: the certificate file and the key file
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names: list[x509.GeneralName] = []
    if dns_name is not None:
        names.append(x509.DNSName(dns_name))
    if ip_address is not None:
        names.append(x509.IPAddress(ipaddress.ip_address(ip_address)))
    if not names:
        raise ValueError("a certificate needs a dns_name, an ip_address or both")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name or str(ip_address))])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "certificate.pem", folder / "certificate.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file
