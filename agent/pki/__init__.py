"""Certificates and keys of the station (OCPP 2.0.1 blocks A and M), on disk.

checks.py: pure X.509 facts (parsing, validity, chains, CertificateHashData);
files.py: private files written atomically; certstore.py: the store the daemon and the
certificates block share. Making CAs is not the station's business: certs/dev_pki.py.
"""

from agent.pki.certstore import CertificateStore, Outcome

__all__ = ["CertificateStore", "Outcome"]
