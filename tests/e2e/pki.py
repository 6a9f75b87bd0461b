"""The fleet's own PKI for the run: a device CA, its devices, a CRL, and a stranger CA."""

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class Authority:
    def __init__(self, common_name: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = self.sign(_name(common_name), self.key.public_key(), ca=True)

    def sign(
        self, subject: x509.Name, public_key, ca: bool = False, issued_ago=datetime.timedelta(minutes=5)
    ) -> x509.Certificate:
        issuer = subject if ca else self.certificate.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - issued_ago)
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        return builder.sign(self.key, hashes.SHA256())

    @property
    def certificate_id(self) -> str:
        return _certificate_id(self.certificate)

    def write(self, folder, name: str) -> tuple[str, str]:
        """The CA certificate and key files `jitr ca register` reads."""
        certificate, key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key.pem"
        certificate.write_text(pem(self.certificate))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(certificate), str(key)

    def device(self, common_name: str, issued_ago=datetime.timedelta(minutes=5)) -> "Device":
        """A device certificate; `issued_ago` sets its notBefore (a rotation's older one)."""
        key = ec.generate_private_key(ec.SECP256R1())
        return Device(common_name, key, self.sign(_name(common_name), key.public_key(), issued_ago=issued_ago), self)

    def crl(self, revoked: list["Device"]) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(_now() - datetime.timedelta(minutes=1))
            .next_update(_now() + datetime.timedelta(days=1))
        )
        for device in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(device.certificate.serial_number)
                .revocation_date(_now() - datetime.timedelta(minutes=1))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _certificate_id(certificate: x509.Certificate) -> str:
    """AWS IoT's certificate id: SHA-256 of the DER encoding."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


class Device:
    def __init__(self, name: str, key, certificate: x509.Certificate, issuer: Authority):
        self.name = name
        self.key = key
        self.certificate = certificate
        self.issuer = issuer

    @property
    def certificate_id(self) -> str:
        return _certificate_id(self.certificate)

    def write(self, folder) -> tuple[str, str]:
        """The chain file (device, then CA: what JITR needs) and the key file."""
        chain = folder / f"{self.name}-{self.certificate_id[:12]}.chain.pem"
        key = folder / f"{self.name}-{self.certificate_id[:12]}.key.pem"
        chain.write_text(pem(self.certificate) + pem(self.issuer.certificate))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(chain), str(key)
