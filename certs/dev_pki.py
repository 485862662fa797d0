#!/usr/bin/env python3
"""A throw-away PKI for trying security profiles 2 and 3 on a laptop.

    python certs/dev_pki.py OUTDIR --station-id CS-001 [--host 127.0.0.1] [--days 365]

makes, in OUTDIR (0700):
    csms-root.pem / .key     a root CA (its key lets a test CSMS sign the station's CSRs)
    csms-server.pem / .key   the CSMS's server certificate for each --host (DNS or IP SAN)
    station.pem / .key       the station's client certificate, CN = the station id

and prints which file goes where. Key files are 0600, certificates 0644. Everything here
is for development: the keys are unencrypted and the CA has no revocation. Only the
standard library and cryptography (>= 38, as Debian 12 ships it) are used.

The functions double as test helpers (tests import them from certs.dev_pki); the
station's runtime (agent/) never makes certificates, it only checks them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
CLOCK_SKEW = timedelta(minutes=5)   # a laptop and a VM rarely agree to the second

PrivateKey = Any  # ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key(key_type: str = "ec") -> PrivateKey:
    """EC P-256 (the default: small and fast) or RSA 2048."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r} (ec or rsa)")


def name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False,
                         key_encipherment=key_encipherment, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def make_root(common_name: str = "Dev CSMS Root CA", key: PrivateKey | None = None, *,
              organization: str | None = None, not_before: datetime | None = None,
              not_after: datetime | None = None, days: float = 3650,
              key_type: str = "ec", ca: bool = True,
              serial_number: int | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed root CA (with ca=False: a self-signed certificate that is no CA)."""
    key = key if key is not None else new_key(key_type)
    start = not_before or datetime.now(timezone.utc) - CLOCK_SKEW
    subject = name(common_name, organization)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key())
               .serial_number(serial_number or x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(not_after or start + CLOCK_SKEW + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(_key_usage(cert_sign=True), critical=True)
    return builder.sign(key, hashes.SHA256()), key


def issue(issuer: x509.Certificate, issuer_key: PrivateKey, common_name: str,
          public_key: Any, *, organization: str | None = None, ca: bool = False,
          path_length: int | None = None, hosts: Sequence[str] = (), client: bool = False,
          server: bool = False, not_before: datetime | None = None,
          not_after: datetime | None = None, days: float = 365,
          serial_number: int | None = None) -> x509.Certificate:
    """A certificate for `public_key` signed by `issuer`: a sub-CA (ca=True), a TLS server
    certificate for `hosts` (server=True) or a TLS client certificate (client=True)."""
    start = not_before or datetime.now(timezone.utc) - CLOCK_SKEW
    builder = (x509.CertificateBuilder().subject_name(name(common_name, organization))
               .issuer_name(issuer.subject).public_key(public_key)
               .serial_number(serial_number or x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(not_after or start + CLOCK_SKEW + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(_key_usage(cert_sign=True), critical=True)
    else:
        builder = builder.add_extension(
            _key_usage(key_encipherment=isinstance(public_key, rsa.RSAPublicKey)), critical=True)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_general_name(h) for h in hosts]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def sign_csr(csr_pem: str | bytes, issuer: x509.Certificate, issuer_key: PrivateKey, *,
             days: float = 365, **kwargs: Any) -> x509.Certificate:
    """What a CSMS's CA does with a SignCertificateRequest: a client certificate for the
    CSR's key and subject CN (the CSR's own signature is checked first)."""
    data = csr_pem.encode("ascii") if isinstance(csr_pem, str) else csr_pem
    csr = x509.load_pem_x509_csr(data)
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    kwargs.setdefault("organization", str(orgs[0].value) if orgs else None)
    return issue(issuer, issuer_key, str(cns[0].value) if cns else "", csr.public_key(),
                 client=True, days=days, **kwargs)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` with `mode` from the first byte (a key is never readable by
    others, not even for a moment before a chmod)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o600)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def make_dev_pki(outdir: Path, station_id: str, *, hosts: Sequence[str] = DEFAULT_HOSTS,
                 days: float = 365, key_type: str = "ec",
                 organization: str = "Dev CSO") -> dict[str, Path]:
    """Write the six files into `outdir`; returns them by name."""
    outdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(outdir, 0o700)
    root, root_key = make_root("Dev CSMS Root CA", organization=organization,
                               key_type=key_type, days=max(days, 1) * 2)
    server_key = new_key(key_type)
    server = issue(root, root_key, hosts[0], server_key.public_key(), organization=organization,
                   hosts=hosts, server=True, days=days)
    station_key = new_key(key_type)
    station = issue(root, root_key, station_id, station_key.public_key(),
                    organization=organization, client=True, days=days)
    paths = {n: outdir / n for n in ("csms-root.pem", "csms-root.key", "csms-server.pem",
                                     "csms-server.key", "station.pem", "station.key")}
    # Certificates are public (0644: a CSMS under another user reads them); keys 0600.
    write_file(paths["csms-root.pem"], pem(root), 0o644)
    write_file(paths["csms-root.key"], key_pem(root_key))
    write_file(paths["csms-server.pem"], pem(server, root), 0o644)
    write_file(paths["csms-server.key"], key_pem(server_key))
    write_file(paths["station.pem"], pem(station), 0o644)
    write_file(paths["station.key"], key_pem(station_key))
    return paths


def _guide(paths: dict[str, Path], station_id: str, hosts: Sequence[str]) -> str:
    p = {k: str(v.resolve()) for k, v in paths.items()}
    host = hosts[0] if ":" not in hosts[0] else f"[{hosts[0]}]"
    return f"""\
Throw-away development PKI for station {station_id} (never use it in production):

  {p['csms-root.pem']}
      the root CA: the station trusts the CSMS through it   -> [csms] ca_file
      (the CSMS trusts station certificates through it too, for profile 3)
  {p['csms-root.key']}
      its private key: keep it to sign more (e.g. the CSRs of SignCertificate in a test CSMS)
  {p['csms-server.pem']}  +  csms-server.key
      the CSMS's TLS server certificate for {', '.join(hosts)} (chain: server, root)
  {p['station.pem']}  +  station.key
      the station's client certificate, CN={station_id}     -> [csms] cert_file, key_file

[csms] table of the station's config:

  url = "wss://{host}:PORT/ocpp"
  security_profile = 3          # 2: TLS + password (cert_file and key_file unused)
  ca_file = "{p['csms-root.pem']}"
  cert_file = "{p['station.pem']}"
  key_file = "{p['station.key']}"
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make a throw-away root CA, CSMS server certificate and station "
                    "client certificate for trying security profiles 2 and 3.")
    parser.add_argument("outdir", type=Path, help="directory to write into (made 0700)")
    parser.add_argument("--station-id", required=True, help="the station id ([station] id)")
    parser.add_argument("--host", action="append", dest="hosts", metavar="HOST",
                        help="host name or IP address the CSMS is reached at; repeatable "
                             f"(default: {', '.join(DEFAULT_HOSTS)})")
    parser.add_argument("--days", type=float, default=365,
                        help="validity of the server and station certificates (default 365)")
    parser.add_argument("--key-type", choices=("ec", "rsa"), default="ec",
                        help="EC P-256 (default) or RSA 2048 keys")
    parser.add_argument("--organization", default="Dev CSO",
                        help="O of every subject (the station's SecurityCtrlr.OrganizationName)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    hosts = args.hosts or list(DEFAULT_HOSTS)
    existing = [n for n in ("csms-root.pem", "csms-root.key", "csms-server.pem",
                            "csms-server.key", "station.pem", "station.key")
                if (args.outdir / n).exists()]
    if existing and not args.force:
        print(f"dev_pki: {args.outdir} already holds {', '.join(existing)}; "
              "choose another directory or pass --force", file=sys.stderr)
        return 2
    if args.days <= 0:
        print("dev_pki: --days must be positive", file=sys.stderr)
        return 2
    try:
        paths = make_dev_pki(args.outdir, args.station_id, hosts=hosts, days=args.days,
                             key_type=args.key_type, organization=args.organization)
    except (OSError, ValueError) as exc:
        print(f"dev_pki: {exc}", file=sys.stderr)
        return 1
    print(_guide(paths, args.station_id, hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
