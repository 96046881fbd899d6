"""The per-workspace certificate authority the egress proxy intercepts bound hosts with.

Its key is made on the host, in the supervisor's memory, and never leaves it (nor touches a
disk): each supervisor start makes a new one and installs only its certificate in the guest's
trust store. Leaf certificates (one per bound host, made on first use) are handed to
``ssl`` through an anonymous memory file. Upstream, the proxy verifies the real server with
the host's trust store, plus the operator's ``PYRO_EGRESS_CA_BUNDLE`` if set.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 365
LEAF_DAYS = 30
UPSTREAM_CA_ENV = "PYRO_EGRESS_CA_BUNDLE"


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class Authority:
    def __init__(self, label: str = "pyro egress") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{label} CA"))
            .issuer_name(_name(f"{label} CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        self.lock = threading.Lock()
        self.contexts: dict[str, tuple[ssl.SSLContext, datetime.datetime]] = {}

    def leaf(self, host: str) -> tuple[bytes, bytes, datetime.datetime]:
        """A certificate (with this CA's after it) and key for ``host``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ends = now + datetime.timedelta(days=LEAF_DAYS)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(ends)
            .add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.pem.encode()
        return chain, _pem(key), ends

    def server_context(self, host: str) -> ssl.SSLContext:
        """The TLS server side the guest sees for ``host`` (made once, renewed near its end)."""
        with self.lock:
            cached = self.contexts.get(host)
            now = datetime.datetime.now(datetime.UTC)
            if cached and cached[1] - now > datetime.timedelta(days=1):
                return cached[0]
            chain, key, ends = self.leaf(host)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_alpn_protocols(["http/1.1"])
            fd = os.memfd_create("pyro-leaf", os.MFD_CLOEXEC)
            try:
                os.write(fd, chain + key)
                context.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            self.contexts[host] = (context, ends)
            return context


def upstream_context(environ: dict[str, str] | None = None) -> ssl.SSLContext:
    """How the proxy checks the real server: the host's trust store (+ the operator's
    extra bundle, ``PYRO_EGRESS_CA_BUNDLE``), names checked, HTTP/1.1 only."""
    env = os.environ if environ is None else environ
    context = ssl.create_default_context()
    extra = env.get(UPSTREAM_CA_ENV)
    if extra:
        context.load_verify_locations(cafile=extra)
    context.set_alpn_protocols(["http/1.1"])
    return context
