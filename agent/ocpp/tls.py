"""TLS for security profiles 2 and 3, as OCPP 2.0.1 part 2 (A00.FR.3xx/4xx) demands.

- TLS 1.2 or 1.3 only; an older CSMS is refused (InvalidTLSVersion).
- Only the cipher suites the spec lists: for TLS 1.2 the ECDHE-ECDSA and ECDHE-RSA GCM
  suites first, then the RSA-key-exchange GCM suites that 2.0.1 still names for older
  back ends; for TLS 1.3 the two AES-GCM suites. Python's ssl module cannot narrow the
  TLS 1.3 offer (OpenSSL also offers ChaCha20), so the negotiated suite is checked once
  the handshake is done and a connection on any other suite is closed
  (InvalidTLSCipherSuite) before a single OCPP byte is sent.
- The CSMS certificate must chain to a trusted CSMS root and match the host name.
- Profile 3 presents the station certificate; profiles 1 and 2 never do.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

TLS12_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
)
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")
ALLOWED = {"TLSv1.2": TLS12_SUITES, "TLSv1.3": TLS13_SUITES}


class TlsPolicyError(Exception):
    """The handshake worked but broke the spec's rules; `event` is the security event."""

    def __init__(self, event: str, message: str) -> None:
        super().__init__(message)
        self.event = event


@dataclass(frozen=True)
class TlsSettings:
    cadata: str                                # PEM of every trusted CSMS root
    client_cert: tuple[Path, Path] | None = None  # (chain, key) for profile 3

    def context(self) -> ssl.SSLContext:
        if not self.cadata.strip():
            raise ssl.SSLError("no CSMS root certificate installed")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies and checks host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(":".join(TLS12_SUITES))
        context.load_verify_locations(cadata=self.cadata)
        if self.client_cert is not None:
            chain, key = self.client_cert
            context.load_cert_chain(str(chain), str(key))
        return context


def check_negotiated(ssl_object: ssl.SSLObject | None) -> None:
    """Raise TlsPolicyError unless the finished handshake used an allowed version/suite."""
    if ssl_object is None:
        return
    version = ssl_object.version() or ""
    if version not in ALLOWED:
        raise TlsPolicyError("InvalidTLSVersion", f"CSMS negotiated {version or 'no TLS'}")
    cipher = (ssl_object.cipher() or ("", "", 0))[0]
    if cipher not in ALLOWED[version]:
        raise TlsPolicyError("InvalidTLSCipherSuite",
                             f"CSMS chose {cipher} on {version}, not one the spec allows")


def classify(exc: BaseException) -> str | None:
    """The security event a failed TLS handshake stands for, if any."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "InvalidCsmsCertificate"
    if not isinstance(exc, ssl.SSLError):
        return None
    text = f"{exc.reason or ''} {exc}".upper()
    if any(word in text for word in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL",
                                     "WRONG_VERSION", "NO_PROTOCOLS_AVAILABLE",
                                     "VERSION_TOO_LOW")):
        return "InvalidTLSVersion"
    if any(word in text for word in ("NO_SHARED_CIPHER", "HANDSHAKE_FAILURE",
                                     "NO_CIPHERS_AVAILABLE", "INSUFFICIENT_SECURITY")):
        return "InvalidTLSCipherSuite"
    if "ALERT" in text and ("CERTIFICATE" in text or "UNKNOWN_CA" in text):
        # The CSMS sent an alert about *our* certificate (profile 3).
        return "FailedToAuthenticateAtCsms"
    if "CERTIFICATE" in text:
        return "InvalidCsmsCertificate"
    return None
