"""TLS rules of security profiles 2 and 3 at the transport: versions, cipher suites and
certificates, each failure named by the security event it stands for."""

import asyncio
import socket
import ssl
import threading
import warnings
from types import SimpleNamespace

import pytest

from agent.ocpp.tls import TLS12_SUITES, TlsPolicyError, TlsSettings, check_negotiated
from agent.ocpp.transport import Endpoint, TransportError, open_connection
from tests.tls_certs import make_ca_and_server


def server_context(cert, key, *, maximum=None, minimum=None, ciphers=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if ciphers:
        context.set_ciphers(ciphers)
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    return context


async def attempt(context, cadata):
    """Open our client against a bare TLS server (blocking OpenSSL in a thread, which
    sends its alerts the way production TLS servers do; asyncio's server just resets)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        endpoint = Endpoint(f"wss://127.0.0.1:{port}/ocpp", "CS-1", "pw",
                            TlsSettings(cadata).context(), open_timeout=5)
        with pytest.raises(TransportError) as caught:
            await open_connection(endpoint)
        return caught.value
    finally:
        listener.close()
        thread.join(5)


def test_an_old_tls_version_is_refused_as_invalid_tls_version(tmp_path):
    ca, cert, key = make_ca_and_server(tmp_path)
    try:
        with warnings.catch_warnings():  # the point is an old version
            warnings.simplefilter("ignore", DeprecationWarning)
            context = server_context(cert, key, minimum=ssl.TLSVersion.TLSv1,
                                     maximum=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot serve TLS 1.1 at all")
    error = asyncio.run(attempt(context, ca.read_text()))
    assert error.event == "InvalidTLSVersion", str(error)


def test_a_csms_without_an_allowed_cipher_suite_is_refused(tmp_path):
    ca, cert, key = make_ca_and_server(tmp_path)
    context = server_context(cert, key, maximum=ssl.TLSVersion.TLSv1_2,
                             ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    error = asyncio.run(attempt(context, ca.read_text()))
    assert error.event == "InvalidTLSCipherSuite", str(error)


def test_a_csms_certificate_from_another_root_is_invalid_csms_certificate(tmp_path):
    ca, _, _ = make_ca_and_server(tmp_path, prefix="trusted-")
    _, cert, key = make_ca_and_server(tmp_path, prefix="other-")
    error = asyncio.run(attempt(server_context(cert, key), ca.read_text()))
    assert error.event == "InvalidCsmsCertificate", str(error)


def test_the_station_offers_only_the_specified_suites(tmp_path):
    ca, _, _ = make_ca_and_server(tmp_path)
    context = TlsSettings(ca.read_text()).context()
    offered = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert offered == set(TLS12_SUITES)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_no_trusted_root_means_no_tls_context():
    with pytest.raises(ssl.SSLError):
        TlsSettings("").context()


def fake(version, cipher):
    return SimpleNamespace(version=lambda: version, cipher=lambda: (cipher, version, 256))


@pytest.mark.parametrize("version, cipher, event", [
    ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", "InvalidTLSCipherSuite"),
    ("TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305", "InvalidTLSCipherSuite"),
    ("TLSv1.1", "AES128-SHA", "InvalidTLSVersion"),
])
def test_a_negotiated_suite_outside_the_spec_is_refused(version, cipher, event):
    with pytest.raises(TlsPolicyError) as caught:
        check_negotiated(fake(version, cipher))
    assert caught.value.event == event


@pytest.mark.parametrize("version, cipher", [
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"), ("TLSv1.2", "AES256-GCM-SHA384"),
])
def test_allowed_suites_pass(version, cipher):
    check_negotiated(fake(version, cipher))
