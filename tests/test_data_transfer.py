"""DataTransfer (P01) and the vendor extension hook (docs/data_transfer.md)."""

from __future__ import annotations

import asyncio

from agent.blocks.data_transfer import DataTransfer, DataTransferRegistry
from agent.ocpp.session import Router


def ask(block_router: Router, payload: dict) -> dict:
    return asyncio.run(block_router.routes["DataTransfer"].handler(payload))


def block(*loaders) -> Router:
    router = Router()
    DataTransfer(router, extensions=lambda: list(loaders))
    return router


def test_unknown_vendor_and_message_are_answered_not_errors():
    def acme(registry: DataTransferRegistry) -> None:
        registry.register("com.acme", "Ping", lambda request: {"status": "Accepted"})

    router = block(acme)
    assert ask(router, {"vendorId": "org.openchargealliance.octt"}) == {
        "status": "UnknownVendorId"}
    assert ask(router, {"vendorId": "com.acme", "messageId": "Pong"}) == {
        "status": "UnknownMessageId"}
    assert ask(router, {"vendorId": "com.acme"}) == {"status": "UnknownMessageId"}
    assert ask(router, {"vendorId": "com.acme", "messageId": "Ping"}) == {"status": "Accepted"}
    # vendorId is matched exactly: another vendor's namespace is not acme's.
    assert ask(router, {"vendorId": "COM.ACME", "messageId": "Ping"}) == {
        "status": "UnknownVendorId"}


def test_handlers_sync_async_and_catch_all_get_the_request():
    seen = []

    async def led(request):
        seen.append(request)
        return {"status": "Accepted", "data": {"led": request["data"]}}

    def register(registry):
        registry.register("com.acme", "SetLed", led)
        registry.register("com.acme", None, lambda request: {"status": "Rejected"})

    router = block(register)
    answer = ask(router, {"vendorId": "com.acme", "messageId": "SetLed", "data": "red"})
    assert answer == {"status": "Accepted", "data": {"led": "red"}}
    assert seen == [{"vendorId": "com.acme", "messageId": "SetLed", "data": "red"}]
    assert ask(router, {"vendorId": "com.acme", "messageId": "Other"}) == {"status": "Rejected"}


def test_a_failing_or_wrong_handler_is_rejected_and_the_rest_still_works():
    def boom(request):
        raise RuntimeError("vendor bug")

    def broken_loader(registry):
        raise ImportError("missing module")

    def register(registry):
        registry.register("com.acme", "Boom", boom)
        registry.register("com.acme", "Wrong", lambda request: {"status": "Maybe"})
        registry.register("com.acme", "Long", lambda request: {
            "status": "Accepted", "statusInfo": {"reasonCode": "x" * 100}})
        registry.register("com.acme", "Ok", lambda request: {"status": "Accepted"})

    router = block(broken_loader, register)
    for message in ("Boom", "Wrong", "Long"):
        answer = ask(router, {"vendorId": "com.acme", "messageId": message})
        assert answer["status"] == "Rejected", message
        assert answer["statusInfo"]["reasonCode"] == "InternalError"
    assert ask(router, {"vendorId": "com.acme", "messageId": "Ok"}) == {"status": "Accepted"}


def test_extensions_load_once_at_the_first_request():
    calls = []

    def register(registry):
        calls.append(1)

    router = Router()
    DataTransfer(router, extensions=lambda: [register])
    assert calls == []
    ask(router, {"vendorId": "x"})
    ask(router, {"vendorId": "y"})
    assert calls == [1]


def test_the_registry_refuses_ids_the_schema_would_refuse():
    registry = DataTransferRegistry()
    for vendor, message in (("", None), ("v" * 256, None), ("v", ""), ("v", "m" * 51)):
        try:
            registry.register(vendor, message, lambda r: {"status": "Accepted"})
        except ValueError:
            continue
        raise AssertionError(f"accepted {vendor!r}/{message!r}")


def test_an_installed_package_s_entry_point_is_the_hook(tmp_path, monkeypatch):
    """docs/data_transfer.md's recipe, as pip would install it: a module and a dist-info
    directory whose entry_points.txt names the register function."""
    (tmp_path / "acme_ext.py").write_text(
        "def register(registry):\n"
        "    registry.register('com.acme', 'Ping', pong)\n\n"
        "async def pong(request):\n"
        "    return {'status': 'Accepted', 'data': {'echo': request.get('data')}}\n")
    info = tmp_path / "acme_ext-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ext\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[station_agent.data_transfer]\nacme = acme_ext:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    router = Router()
    DataTransfer(router)      # the default: installed extensions
    assert ask(router, {"vendorId": "com.acme", "messageId": "Ping", "data": 7}) == {
        "status": "Accepted", "data": {"echo": 7}}
    assert ask(router, {"vendorId": "org.openchargealliance.octt"}) == {
        "status": "UnknownVendorId"}
