"""Certificates and keys of the station (OCPP 2.0.1 blocks A and M), on disk.

checks.py: pure X.509 facts (parsing, validity, chains, CertificateHashData);
files.py: private files written atomically; certstore.py: the store the daemon and the
certificates block share; lazy.py: that store opened only once it is needed (cryptography
is heavy); pem.py: PEM blocks and fingerprints without cryptography; withdrawn.py: the
config's CSMS roots the CSMS deleted. Making CAs is not the station's business:
certs/dev_pki.py.

Nothing is imported here: importing agent.pki.files, .lazy, .pem or .withdrawn must not
pull cryptography in with certstore.
"""
