"""PEM certificate blocks without cryptography: splitting a bundle and naming each
certificate by the SHA-256 of its DER.

The daemon reads the config's csms.ca_file at every connection and must leave out the
roots the CSMS withdrew (DeleteCertificate, see certstore.py); doing that with the
standard library keeps cryptography out of a station that has nothing installed
(agent/pki/lazy.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----")
_ARMOUR = re.compile(r"-----(BEGIN|END) CERTIFICATE-----")


def pem_blocks(text: str) -> list[str]:
    """The PEM certificate blocks in `text`, unparsed, in order. Text outside them
    (comments, bag attributes) is ignored, as OpenSSL does."""
    return _PEM_BLOCK.findall(text)


def der_fingerprint(block: str) -> str | None:
    """SHA-256 (hex) of the DER inside one PEM block, as agent.pki.checks.fingerprint
    computes it from a parsed certificate; None if the base64 is broken."""
    body = "".join(_ARMOUR.sub("", block).split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha256(der).hexdigest() if der else None
