"""A throwaway CA and one server certificate from it, for the tests' TLS stand-ins.

Shared by the Google API stand-in's unit tests and the GCP scenario (tests/integration/gcp_testbed.py):
the CA goes into the client's trust (a CA bundle or REQUESTS_CA_BUNDLE), the certificate and key into
the stand-in. Nothing here is used outside the tests.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signer, extensions) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def write_ca_and_server_certificate(
    directory: Path, dns_names: list[str], ip_addresses: tuple[str, ...] = (), ca_name: str = "mlflow-ansible test CA"
) -> dict[str, Path]:
    """Write ca.crt, server.crt (for every name and address) and server.key (PKCS#8) into directory, each 0644
    (the stand-in's container reads them as another user). Returns their paths as ca, cert and key."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = _certificate(issuer, issuer, ca_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
    ])
    names = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    cert = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]), issuer,
                        key.public_key(), ca_key, [
                            (x509.SubjectAlternativeName(names), False),
                            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
                        ])
    directory.mkdir(parents=True, exist_ok=True)
    files = {"ca": directory / "ca.crt", "cert": directory / "server.crt", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    for path in files.values():
        path.chmod(0o644)
    return files
