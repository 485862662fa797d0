"""What a daemon that does not need it never loads (the 32 MB RSS target, bench/
startup_idle.py): cryptography (~8 MB resident) until a certificate is installed or a
firmware signature checked, the file-transfer code until a download or upload, tar until
a log is archived, the typed messages (for type checkers only)."""

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.tls_certs import make_ca_and_server

HEAVY = ("cryptography", "agent.transfer", "tarfile", "ftplib", "agent.ocpp.v201.messages",
         "agent.pki.certstore", "agent.blocks.firmware.verify", "difflib")


def _loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import sys
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_a_profile_1_daemon_runs_without_them(tmp_path):
    """The real daemon (in a child process: this one has imported everything), started
    for a few turns of its loop with mock hardware and no CSMS to reach."""
    config = tmp_path / "station-agent.toml"
    config.write_text(
        '[station]\nid = "CS-LEAN"\nvendor = "Example"\nmodel = "AC-22"\n\n'
        '[csms]\nurl = "ws://127.0.0.1:9/ocpp"\nsecurity_profile = 1\n'
        'password = "lean-password-0000"\n\n[storage]\ndir = "state"\n\n'
        '[hal]\ndriver = "mock"\n\n[[evse]]\nid = 1\nmax_current_a = 32\n')
    loaded = _loaded_after(f"""
        import asyncio
        from agent.config import load_config
        from agent.preflight import check_startable
        from agent.daemon import run_daemon
        config = load_config({str(config)!r})
        check_startable(config)

        async def main():
            stop = asyncio.Event()
            task = asyncio.ensure_future(run_daemon(config, stop))
            for _ in range(200):
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(task, 10)
        asyncio.run(main())
    """)
    assert loaded == set()


def test_an_empty_certificate_store_answers_without_cryptography(tmp_path):
    loaded = _loaded_after(f"""
        from pathlib import Path
        from agent.pki.lazy import LazyCertificateStore
        store = LazyCertificateStore(Path({str(tmp_path / "certs")!r}))
        assert store.count() == 0 and store.csms_roots_pem() == ""
        assert store.station_certificate_expiry() is None
        assert store.station_credentials() is None
        assert store.roots_pem("ManufacturerRootCertificate") == []
        assert not store.opened
    """)
    assert loaded == set()


def test_a_store_with_something_in_it_is_the_real_store(tmp_path):
    from agent.pki.lazy import LazyCertificateStore
    ca, _, _ = make_ca_and_server(tmp_path)
    from datetime import datetime, timezone
    store = LazyCertificateStore(tmp_path / "certs")
    outcome = store.install("CSMSRootCertificate", Path(ca).read_text(),
                            datetime.now(timezone.utc))
    assert outcome.ok and store.opened
    # A later start finds it on disk: opened for the question, and the answer is real.
    again = LazyCertificateStore(tmp_path / "certs")
    assert again.count() == 1 and again.opened
    assert "BEGIN CERTIFICATE" in LazyCertificateStore(tmp_path / "certs").csms_roots_pem()


def test_roots_come_back_one_pem_each(tmp_path):
    use = "ManufacturerRootCertificate"   # what firmware signatures are checked against
    from datetime import datetime, timezone

    from agent.pki.lazy import LazyCertificateStore
    first, _, _ = make_ca_and_server(tmp_path, prefix="a-")
    second, _, _ = make_ca_and_server(tmp_path, prefix="b-")
    store = LazyCertificateStore(tmp_path / "certs")
    for ca in (first, second):
        assert store.install(use, Path(ca).read_text(), datetime.now(timezone.utc)).ok
    pems = LazyCertificateStore(tmp_path / "certs").roots_pem(use)
    assert len(pems) == 2 and all(p.count("BEGIN CERTIFICATE") == 1 for p in pems)
