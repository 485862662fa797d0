"""Part 6, M Certificate management: the Charging Station cases of Core (Part 5 with the
errata: for stations that support security profile 2 or 3, as this one does). The station
runs on security profile 2, its CSMS root in the config's csms.ca_file as an installer
puts it there, and nothing installed over OCPP unless a case installs it: the station
lists the config's roots as CSMSRootCertificates. The hash data the station reports is
checked against values computed here from the DER."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conformance.rig import Rig, run
from tests.conformance.tls_station import (Authority, authority,
                                           renew_charging_station_certificate, same_hash,
                                           station_on, tls_csms)

CSMS_ROOT = "CSMSRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
NO_AS2 = ("not applicable: AS-2 (AdditionalRootCertificateCheck) is not implemented; "
          "SecurityCtrlr.AdditionalRootCertificateCheck is false")


@contextlib.asynccontextmanager
async def station(tmp_path: Path, lab: Authority | None = None,
                  also_trusted: tuple[Authority, ...] = ()) -> AsyncIterator[Rig]:
    """The station on security profile 2 with the lab's CSMS, whose root `lab` is the
    config's csms.ca_file, with `also_trusted` roots in the same file."""
    lab = lab or authority(tmp_path, "lab")
    ca_file = lab.pem_path
    if also_trusted:
        ca_file = tmp_path / "ca-bundle.pem"
        ca_file.write_text("".join(root.pem for root in (lab, *also_trusted)))
    async with tls_csms(*lab.server(tmp_path, "lab-server")) as csms:
        async with station_on(tmp_path, csms, profile=2, ca=ca_file) as rig:
            yield rig
        assert csms.schema_errors == []


async def certificate_installed(rig, use: str, root: Authority) -> None:
    """Memory state CertificateInstalled."""
    answer = await rig.call("InstallCertificate", {"certificateType": use,
                                                   "certificate": root.pem})
    assert answer["status"] == "Accepted"


async def get_installed(rig, types: list[str] | None) -> dict:
    return await rig.call("GetInstalledCertificateIds",
                          {} if types is None else {"certificateType": types})


async def get_installed_certificates(rig, use: str, root: Authority) -> dict:
    """Reusable state GetInstalledCertificates, with its tool validations; returns the
    entry of `root`."""
    answer = await get_installed(rig, [use])
    assert answer["status"] == "Accepted"
    entries = [e for e in answer["certificateHashDataChain"]
               if e["certificateType"] == use and same_hash(e["certificateHashData"],
                                                            root.hash_data())]
    assert len(entries) == 1, answer
    assert all(e["certificateType"] == use for e in answer["certificateHashDataChain"])
    return entries[0]


def test_TC_M_01(tmp_path):
    """Install CA certificate - CSMSRootCertificate."""
    async def case():
        root = authority(tmp_path, "csms")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, root)                       # step 1
            entry = await get_installed_certificates(rig, CSMS_ROOT, root)          # step 2
            # AdditionalRootCertificateCheck false: the lab deletes it again.
            answer = await rig.call("DeleteCertificate",
                                    {"certificateHashData": entry["certificateHashData"]})
            assert answer["status"] == "Accepted"
    run(case())


def test_TC_M_02(tmp_path):
    """Install CA certificate - ManufacturerRootCertificate."""
    async def case():
        root = authority(tmp_path, "manufacturer")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, MANUFACTURER_ROOT, root)               # step 1
            await get_installed_certificates(rig, MANUFACTURER_ROOT, root)          # step 2
    run(case())


def test_TC_M_07(tmp_path):
    """Install CA certificate - Rejected - Certificate invalid (expired)."""
    async def case():
        lab = authority(tmp_path, "lab")
        expired = authority(tmp_path, "expired", expired=True)
        # No preparations: a fresh station, whose one CSMS root is the config's.
        async with station(tmp_path, lab) as rig:
            answer = await rig.call("InstallCertificate", {
                "certificateType": CSMS_ROOT, "certificate": expired.pem})
            assert answer["status"] == "Rejected"                                   # step 2
            answer = await get_installed(rig, [CSMS_ROOT])                          # step 4
            assert answer["status"] == "Accepted"
            chain = answer["certificateHashDataChain"]
            assert not any(same_hash(e["certificateHashData"], expired.hash_data())
                           for e in chain)
            # What it lists is what it trusts: the config's root, and nothing else.
            assert [e["certificateType"] for e in chain] == [CSMS_ROOT]
            assert same_hash(chain[0]["certificateHashData"], lab.hash_data())
    run(case())


def test_TC_M_09(tmp_path):
    """Install CA certificate - AdditionalRootCertificateCheck - Rejected."""
    pytest.skip(NO_AS2)


def test_TC_M_30(tmp_path):
    """Install CA certificate - AdditionalRootCertificateCheck - Reconnect using new CSMS
    Root - Success."""
    pytest.skip(NO_AS2)


def test_TC_M_31(tmp_path):
    """Install CA certificate - AdditionalRootCertificateCheck - Reconnect using new CSMS
    Root - Fallback mechanism."""
    pytest.skip(NO_AS2)


def test_TC_M_12(tmp_path):
    """Retrieve certificates from Charging Station - CSMSRootCertificate."""
    async def case():
        root = authority(tmp_path, "csms")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, root)
            await get_installed_certificates(rig, CSMS_ROOT, root)
    run(case())


def test_TC_M_13(tmp_path):
    """Retrieve certificates from Charging Station - ManufacturerRootCertificate."""
    async def case():
        root = authority(tmp_path, "manufacturer")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, MANUFACTURER_ROOT, root)
            await get_installed_certificates(rig, MANUFACTURER_ROOT, root)
    run(case())


def test_TC_M_17(tmp_path):
    """Retrieve certificates from Charging Station - CSMSRootCertificate &
    ManufacturerRootCertificate."""
    async def case():
        csms_root = authority(tmp_path, "csms")
        manufacturer = authority(tmp_path, "manufacturer")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, csms_root)
            await certificate_installed(rig, MANUFACTURER_ROOT, manufacturer)
            answer = await get_installed(rig, [CSMS_ROOT, MANUFACTURER_ROOT])
            assert answer["status"] == "Accepted"
            chain = answer["certificateHashDataChain"]
            # Both installed roots and the config's CSMS root, nothing of another type.
            assert sorted(e["certificateType"] for e in chain) == [
                CSMS_ROOT, CSMS_ROOT, MANUFACTURER_ROOT]
            for use, root in ((CSMS_ROOT, csms_root), (MANUFACTURER_ROOT, manufacturer)):
                assert any(e["certificateType"] == use
                           and same_hash(e["certificateHashData"], root.hash_data())
                           for e in chain)
    run(case())


def test_TC_M_18(tmp_path):
    """Retrieve certificates from Charging Station - All certificateTypes."""
    async def case():
        csms_root = authority(tmp_path, "csms")
        manufacturer = authority(tmp_path, "manufacturer")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, csms_root)
            await certificate_installed(rig, MANUFACTURER_ROOT, manufacturer)
            answer = await get_installed(rig, None)                                 # step 1
            assert answer["status"] == "Accepted"                                   # step 2
            chain = answer["certificateHashDataChain"]
            for use, root in ((CSMS_ROOT, csms_root), (MANUFACTURER_ROOT, manufacturer)):
                assert any(e["certificateType"] == use
                           and same_hash(e["certificateHashData"], root.hash_data())
                           for e in chain), (use, chain)
    run(case())


def test_TC_M_19(tmp_path):
    """Retrieve certificates from Charging Station - No matching certificate found."""
    async def case():
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, authority(tmp_path, "csms"))
            answer = await get_installed(rig, ["MORootCertificate"])
            assert answer["status"] == "NotFound"                                   # step 2
            assert "certificateHashDataChain" not in answer
    run(case())


def test_TC_M_20(tmp_path):
    """Delete a certificate from a Charging Station - Success."""
    async def case():
        lab = authority(tmp_path, "lab")
        # The certificate the OCTT is configured with: here a second CSMS root the
        # installer put in csms.ca_file beside the lab's. A profile-2 station keeps its
        # last CSMS root (Part 5 AQ-1: the last one can be removed on profile 1 only),
        # so with the lab's root alone step 3 would be Failed, not Accepted.
        configured = authority(tmp_path, "csms")
        async with station(tmp_path, lab, also_trusted=(configured,)) as rig:
            # Preparations: GetInstalledCertificates, and CertificateInstalled only when
            # none is returned: the config's roots are returned, nothing is installed.
            if (await get_installed(rig, [CSMS_ROOT]))["status"] != "Accepted":
                await certificate_installed(rig, CSMS_ROOT, configured)
            entry = await get_installed_certificates(rig, CSMS_ROOT, configured)    # step 1
            answer = await rig.call("DeleteCertificate",
                                    {"certificateHashData": entry["certificateHashData"]})
            assert answer["status"] == "Accepted"                                   # step 3
            answer = await get_installed(rig, [CSMS_ROOT])                          # step 4
            assert not any(same_hash(e["certificateHashData"], configured.hash_data())
                           for e in answer.get("certificateHashDataChain", []))
            # Withdrawn for good, the config file untouched: after a power cycle it is
            # still not listed, and the lab's root still verifies the CSMS.
            assert configured.pem in (tmp_path / "ca-bundle.pem").read_text()
            await rig.power_cycle()
            await get_installed_certificates(rig, CSMS_ROOT, lab)
            answer = await get_installed(rig, [CSMS_ROOT])
            assert not any(same_hash(e["certificateHashData"], configured.hash_data())
                           for e in answer["certificateHashDataChain"])
    run(case())


def test_TC_M_22(tmp_path):
    """Delete a certificate from a Charging Station - No matching certificate found."""
    async def case():
        root = authority(tmp_path, "csms")
        unknown = authority(tmp_path, "unknown")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, root)
            await get_installed_certificates(rig, CSMS_ROOT, root)                  # step 1
            answer = await rig.call("DeleteCertificate",
                                    {"certificateHashData": unknown.hash_data()})
            assert answer["status"] == "NotFound"                                   # step 3
            await get_installed_certificates(rig, CSMS_ROOT, root)   # nothing else went
    run(case())


def test_TC_M_23(tmp_path):
    """Delete a certificate from a Charging Station - Unable to delete the Charging
    Station Certificate."""
    async def case():
        root = authority(tmp_path, "csms")
        async with station(tmp_path) as rig:
            await certificate_installed(rig, CSMS_ROOT, root)
            leaf = await renew_charging_station_certificate(rig, root)
            answer = await get_installed(rig, None)                                 # step 1
            assert answer["status"] == "Accepted"
            issuer_key = root.cert.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            leaf_hash = {"hashAlgorithm": "SHA256",
                         "issuerNameHash": hashlib.sha256(leaf.issuer.public_bytes()).hexdigest(),
                         "issuerKeyHash": hashlib.sha256(issuer_key).hexdigest(),
                         "serialNumber": format(leaf.serial_number, "x")}
            answer = await rig.call("DeleteCertificate", {"certificateHashData": leaf_hash})
            assert answer["status"] in ("NotFound", "Failed")                       # step 3
    run(case())

