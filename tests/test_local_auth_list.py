"""The Local Authorization List (block D: D01, D02) and its part in authorization (C13,
C14): SendLocalList rules, GetLocalListVersion, persistence, limits, and the decisions of
agent/blocks/authorization.py with a real list beside the real cache."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from agent.blocks.authorization import Authorization, Decision
from agent.blocks.local_auth_list import LocalAuthList, entries_of
from agent.clock import format_datetime
from agent.model.definitions import LOCAL_LIST_BYTES, LOCAL_LIST_ENTRIES, LOCAL_LIST_ITEMS
from agent.model.types import FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST, Component, Variable
from agent.ocpp.validation import validate
from tests.test_auth_cache import Env, accepted, tok
from tests.test_authorization import FakeLink

FEATURES = frozenset({FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST})
CARD = tok("04A2B3C4D5E6F7")
OTHER = tok("04FFEEDDCCBBAA")
GROUP = tok("FLEET-7", "Central")


class ListEnv(Env):
    """Store, device model, cache, list and authorization, as the daemon wires them."""

    def __init__(self, path: Path, **kwargs) -> None:
        self.link = FakeLink()
        super().__init__(path, features=FEATURES, **kwargs)

    def _open(self) -> None:
        super()._open()
        self.list = LocalAuthList(self.router, self.model, self.store)
        self.auth = Authorization(self.link, self.router, self.model, self.clock, self.store,
                                  self.cache, local_list=self.list)

    def send(self, version: int, update: str = "Full", items: list | None = None) -> dict:
        request: dict = {"versionNumber": version, "updateType": update}
        if items is not None:
            request["localAuthorizationList"] = items
        validate("SendLocalList", "request", request)
        answer = self._handle("SendLocalList", request)
        validate("SendLocalList", "response", answer)
        return answer

    def version(self) -> int:
        answer = self._handle("GetLocalListVersion", {})
        validate("GetLocalListVersion", "response", answer)
        return answer["versionNumber"]

    def _handle(self, action: str, payload: dict) -> dict:
        handler = self.router.routes[action].handler
        return asyncio.run(handler(payload))

    def variable(self, name: str) -> str:
        return self.model.get_str("LocalAuthListCtrlr", name)

    def decide(self, token=CARD, **kwargs) -> Decision:
        return asyncio.run(asyncio.wait_for(self.auth.authorize(token, **kwargs), 10))

    def authorize_sent(self) -> int:
        return sum(1 for action, _, _ in self.link.calls if action == "Authorize")


@pytest.fixture
def env(tmp_path: Path):
    e = ListEnv(tmp_path / "station-agent.db")
    yield e
    e.close()


def entry(token: dict, status: str | None = "Accepted", **info) -> dict:
    item: dict = {"idToken": token}
    if status is not None:
        item["idTokenInfo"] = {"status": status, **info}
    return item


def tokens(env: ListEnv) -> dict[str, str]:
    return {e["idToken"]["idToken"]: e["idTokenInfo"]["status"] for e in entries_of(env.store)}


# -- D02: GetLocalListVersion --------------------------------------------------------------------

def test_no_list_yet_is_version_0_and_available(env):
    """D02.FR.02, and the controller reports the feature (Part 5: LocalAuthListCtrlr)."""
    assert env.version() == 0
    assert env.variable("Available") == "true"
    assert env.variable("Enabled") == "true"
    assert env.variable("Entries") == "0"
    assert env.variable("Storage") == "0"


# -- D01: SendLocalList --------------------------------------------------------------------------

def test_full_installs_and_replaces(env):
    """D01.FR.15: Full replaces; D01.FR.04: Full without entries empties the list."""
    assert env.send(10, "Full", [entry(CARD), entry(OTHER, "Blocked")]) == {"status": "Accepted"}
    assert env.version() == 10
    assert tokens(env) == {CARD["idToken"]: "Accepted", OTHER["idToken"]: "Blocked"}
    assert env.variable("Entries") == "2"
    # A Full may carry a lower version: it is a new list, not a step of the old one.
    assert env.send(3, "Full", [entry(OTHER)])["status"] == "Accepted"
    assert env.version() == 3 and tokens(env) == {OTHER["idToken"]: "Accepted"}
    assert env.send(20, "Full")["status"] == "Accepted"
    assert env.version() == 20 and tokens(env) == {}
    assert env.variable("Entries") == "0" and env.variable("Storage") == "0"


def test_differential_adds_updates_and_removes(env):
    """D01.FR.16 (with idTokenInfo: add or replace), D01.FR.17 (without: remove),
    D01.FR.05 (no entries: only the version moves)."""
    env.send(1, "Full", [entry(CARD), entry(OTHER)])
    assert env.send(2, "Differential", [entry(CARD, "Blocked")])["status"] == "Accepted"
    assert tokens(env) == {CARD["idToken"]: "Blocked", OTHER["idToken"]: "Accepted"}
    third = tok("0000THIRD")
    assert env.send(3, "Differential", [entry(third), entry(OTHER, None)])["status"] == "Accepted"
    assert tokens(env) == {CARD["idToken"]: "Blocked", third["idToken"]: "Accepted"}
    assert env.variable("Entries") == "2"
    assert env.send(7, "Differential")["status"] == "Accepted"
    assert env.version() == 7 and env.variable("Entries") == "2"
    # Removing a token the list does not hold is no error.
    assert env.send(8, "Differential", [entry(tok("NOT-THERE"), None)])["status"] == "Accepted"


def test_differential_version_not_above_is_version_mismatch(env):
    """D01.FR.19: nothing of a Differential whose versionNumber is not above the
    installed one is applied."""
    env.send(5, "Full", [entry(CARD)])
    for version in (5, 4):
        answer = env.send(version, "Differential", [entry(OTHER), entry(CARD, None)])
        assert answer["status"] == "VersionMismatch"
    assert env.version() == 5 and tokens(env) == {CARD["idToken"]: "Accepted"}


def test_version_0_duplicates_and_full_removals_fail(env):
    """D01.FR.18 (versionNumber 0), D01.FR.06 (an idToken twice, here differing only in
    case: a CiString), a Full entry without idTokenInfo: Failed, and nothing changes."""
    env.send(4, "Full", [entry(CARD)])
    before = (env.version(), tokens(env), env.variable("Storage"))
    for version in (0, -1):
        for update in ("Full", "Differential"):
            answer = env.send(version, update, [entry(OTHER)])
            # Appendix 5: ValuePositiveOnly, "Provided value is not greater than zero".
            assert answer["status"] == "Failed", answer
            assert answer["statusInfo"]["reasonCode"] == "ValuePositiveOnly", answer
    # Past a 32-bit integer: the session refuses it (TypeConstraintViolation); the block
    # itself also does, should a caller hand it one.
    assert env.list.apply({"versionNumber": 2**63, "updateType": "Full",
                           "localAuthorizationList": [entry(OTHER)]})["status"] == "Failed"
    twice = [entry(OTHER), entry(tok(OTHER["idToken"].lower()), "Blocked")]
    failed = env.send(9, "Full", twice)
    assert failed["status"] == "Failed" and failed["statusInfo"]["reasonCode"] == "InvalidValue"
    assert env.send(9, "Differential", twice)["status"] == "Failed"
    assert env.send(9, "Full", [entry(OTHER), entry(CARD, None)])["status"] == "Failed"
    assert (env.version(), tokens(env), env.variable("Storage")) == before


def test_case_insensitive_and_typed_keys(env):
    """An idToken is a CiString: a Differential for "04a2..." replaces "04A2..."; the same
    text with another type is another token."""
    env.send(1, "Full", [entry(CARD)])
    env.send(2, "Differential", [entry(tok(CARD["idToken"].lower()), "Blocked"),
                                 entry(tok(CARD["idToken"], "KeyCode"))])
    assert env.list.lookup(CARD)["status"] == "Blocked"
    assert env.list.lookup(tok(CARD["idToken"], "KeyCode"))["status"] == "Accepted"
    assert env.variable("Entries") == "2"


def test_additional_info_is_no_part_of_the_key(env):
    """An entry is keyed by idToken and type: the same idToken and type with other
    additionalInfo is the same entry (twice in one request: Failed; in a Differential:
    the replacement), and a presented token finds its entry whatever additionalInfo it
    carries."""
    emaid = {"idToken": "NL-ABC-C12345678-X", "type": "eMAID",
             "additionalInfo": [{"additionalIdToken": "04A2B3C4", "type": "ISO14443"}]}
    other_info = dict(emaid, additionalInfo=[{"additionalIdToken": "X", "type": "Y"}])
    assert env.send(1, "Full", [entry(emaid), entry(other_info)])["status"] == "Failed"
    env.send(1, "Full", [entry(emaid)])
    env.send(2, "Differential", [entry(other_info, "Blocked")])
    assert env.variable("Entries") == "1"
    bare = {"idToken": emaid["idToken"].lower(), "type": "eMAID"}
    assert env.list.lookup(bare)["status"] == "Blocked"
    assert env.list.lookup(dict(bare, type="ISO14443")) is None


def test_items_per_message_is_enforced(env):
    """ItemsPerMessage: a request with more entries is Failed (TooManyElements, which
    Appendix 5 names for SendLocalList); exactly that many are taken."""
    assert env.variable("ItemsPerMessage") == str(LOCAL_LIST_ITEMS)
    assert env.variable("BytesPerMessage") == str(LOCAL_LIST_BYTES)
    many = [entry(tok(f"T{i:06d}")) for i in range(LOCAL_LIST_ITEMS + 1)]
    answer = env.send(1, "Full", many)
    assert answer == {"status": "Failed", "statusInfo": {
        "reasonCode": "TooManyElements", "additionalInfo": answer["statusInfo"]["additionalInfo"]}}
    assert env.version() == 0 and env.variable("Entries") == "0"
    assert env.send(1, "Full", many[:-1])["status"] == "Accepted"
    assert env.variable("Entries") == str(LOCAL_LIST_ITEMS)


def test_entries_and_storage_max_limits_refuse_growth(env, monkeypatch):
    """Entries' and Storage's maxLimit are capacities: an update that would pass one is
    Failed (OutOfStorage) and rolled back whole."""
    definition = env.model.definition
    entries = definition(Component("LocalAuthListCtrlr"), Variable("Entries"))
    assert entries.characteristics.max_limit == LOCAL_LIST_ENTRIES
    env.send(1, "Full", [entry(tok(f"A{i}")) for i in range(3)])
    storage = int(env.variable("Storage"))
    assert storage > 3 * 64   # each row counts its key, status, JSON and overhead

    def limited(name, limit):
        """A board with less room: `name`'s maxLimit is `limit`."""
        def patched(component, variable):
            d = definition(component, variable)
            if component.name == "LocalAuthListCtrlr" and variable.name == name:
                return replace(d, characteristics=replace(d.characteristics, max_limit=limit))
            return d
        monkeypatch.setattr(env.model, "definition", patched)

    limited("Entries", 4)
    answer = env.send(2, "Differential", [entry(tok("B1")), entry(tok("B2"))])
    assert answer["status"] == "Failed" and answer["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert env.version() == 1 and env.variable("Entries") == "3"
    assert env.send(2, "Differential", [entry(tok("B1")), entry(tok("A0"), None)])[
        "status"] == "Accepted"   # a removal makes room in the same update
    monkeypatch.undo()
    limited("Storage", storage)
    answer = env.send(3, "Differential", [entry(tok("C1"))])
    assert answer["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert env.version() == 2


def test_disabled_list_is_not_used_and_refuses_updates(env):
    """LocalAuthListCtrlr.Enabled false: version 0 (D02.FR.03), SendLocalList Failed
    (NotEnabled), the list not consulted; enabled again, the old list is back."""
    env.send(6, "Full", [entry(CARD)])
    env.link.connected = False
    env.set("AuthCtrlr", "LocalAuthorizeOffline", "true")
    assert env.decide().accepted
    env.set("LocalAuthListCtrlr", "Enabled", "false")
    assert env.version() == 0
    answer = env.send(7, "Full", [entry(OTHER)])
    assert answer["status"] == "Failed" and answer["statusInfo"]["reasonCode"] == "NotEnabled"
    assert env.list.lookup(CARD) is None
    assert env.decide().status == "Invalid"     # unknown offline: the list is off
    env.set("LocalAuthListCtrlr", "Enabled", "true")
    assert env.version() == 6 and env.decide().accepted


def test_list_and_settings_survive_a_restart(env):
    """Persisted: entries, version, Entries/Storage, Enabled and DisablePostAuthorize."""
    env.send(11, "Full", [entry(CARD, groupIdToken=GROUP)])
    env.set("LocalAuthListCtrlr", "DisablePostAuthorize", "true")
    storage = env.variable("Storage")
    env.reopen()
    assert env.version() == 11
    assert env.list.lookup(CARD) == {"status": "Accepted", "groupIdToken": GROUP}
    assert env.variable("Entries") == "1" and env.variable("Storage") == storage
    assert env.variable("DisablePostAuthorize") == "true"
    env.set("LocalAuthListCtrlr", "Enabled", "false")
    env.reopen()
    assert env.variable("Enabled") == "false" and env.version() == 0


def test_a_failure_inside_the_update_leaves_the_old_list(env, monkeypatch):
    """Atomic: a store error half-way through a Full (here on its second insert) rolls
    back the deletion of the old list and keeps the old version."""
    env.send(2, "Full", [entry(CARD), entry(OTHER)])
    real = env.store.transaction

    class Failing:
        def __init__(self, db):
            self.db, self.inserts = db, 0

        def execute(self, sql, params=()):
            if sql.startswith("INSERT"):
                self.inserts += 1
                if self.inserts == 2:
                    raise sqlite3.OperationalError("disk I/O error")
            return self.db.execute(sql, params)

    @contextmanager
    def failing():
        with real() as db:
            yield Failing(db)
    monkeypatch.setattr(env.store, "transaction", failing)
    answer = env.send(3, "Full", [entry(tok("N1")), entry(tok("N2"))])
    monkeypatch.undo()
    # D01: the answer says the update failed (a SendLocalListResponse, never a CALLERROR
    # InternalError), and the old list and version are in force.
    assert answer["status"] == "Failed" and answer["statusInfo"]["reasonCode"] == "InternalError"
    assert env.version() == 2
    assert tokens(env) == {CARD["idToken"]: "Accepted", OTHER["idToken"]: "Accepted"}
    assert env.variable("Entries") == "2"


def test_a_full_disk_is_failed_out_of_storage(env, monkeypatch):
    """SQLite's "database or disk is full" in the middle of a Differential: Failed,
    OutOfStorage (Appendix 5), and nothing of it applied."""
    env.send(2, "Full", [entry(CARD)])
    real = env.store.transaction

    class Full:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, params=()):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, params)

    @contextmanager
    def full():
        with real() as db:
            yield Full(db)
    monkeypatch.setattr(env.store, "transaction", full)
    answer = env.send(3, "Differential", [entry(CARD, None), entry(OTHER)])
    monkeypatch.undo()
    assert answer["status"] == "Failed" and answer["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert env.version() == 2 and tokens(env) == {CARD["idToken"]: "Accepted"}


def test_an_idtoken_that_is_no_unicode_text_is_failed(env):
    """JSON's \\u escapes can carry a lone surrogate, which no UTF-8 store or frame can
    hold: an entry with one is Failed (InvalidValue), not an InternalError, and changes
    nothing; a lookup of such an idToken finds nothing rather than raising."""
    env.send(1, "Full", [entry(CARD)])
    bad = tok("A\ud800")
    answer = env.send(2, "Full", [entry(OTHER), entry(bad)])
    assert answer["status"] == "Failed" and answer["statusInfo"]["reasonCode"] == "InvalidValue"
    assert env.send(2, "Differential", [entry(bad, None)])["status"] == "Failed"
    # Nor anywhere in an entry: it could not go out again (CustomerInformation quotes it).
    answer = env.send(2, "Differential", [entry(OTHER, groupIdToken=tok("G\udfff", "Central"))])
    assert answer["status"] == "Failed" and answer["statusInfo"]["reasonCode"] == "InvalidValue"
    assert env.version() == 1 and tokens(env) == {CARD["idToken"]: "Accepted"}
    assert env.list.lookup(bad) is None


def test_duplicates_are_judged_as_the_table_keys(env):
    """D01.FR.06 with the key the table has: ASCII case does not count, other Unicode
    case is another token ("K1" and KELVIN SIGN "\u212a1" are two entries), as is the
    same text with another type."""
    kelvin = tok("\u212a1")
    assert env.send(1, "Full", [entry(tok("k1")), entry(kelvin, "Blocked"),
                                entry(tok("k1", "KeyCode"))])["status"] == "Accepted"
    assert env.variable("Entries") == "3"
    assert env.list.lookup(tok("K1"))["status"] == "Accepted"
    assert env.list.lookup(kelvin)["status"] == "Blocked"
    assert env.send(2, "Full", [entry(tok("k1")), entry(tok("K1"))])["status"] == "Failed"


def test_lookup_is_an_indexed_query(env):
    """The list is never loaded: a lookup is one primary-key search (SQLite's plan)."""
    env.send(1, "Full", [entry(CARD)])
    plan = env.store.query("EXPLAIN QUERY PLAN SELECT info FROM local_auth_list "
                           "WHERE id_token = ? AND type = ?", ("x", "ISO14443"))
    assert any("PRIMARY KEY" in row[-1] for row in plan), plan


# -- the list in authorization (C13, C14) --------------------------------------------------------

def test_offline_list_accepts_with_its_group_and_is_never_asked(env):
    """C13.FR.01/02: offline with LocalAuthorizeOffline, a valid list entry is Accepted,
    its groupIdToken with it; the cache's different view of the token does not count."""
    env.cache.update(CARD, {"status": "Blocked"})
    env.send(1, "Full", [entry(CARD, groupIdToken=GROUP)])
    env.link.connected = False
    env.set("AuthCtrlr", "LocalAuthorizeOffline", "true")
    d = env.decide()
    assert d.accepted and d.offline and d.from_cache
    assert d.info["groupIdToken"] == GROUP
    assert env.auth.same_group(d.info, {"status": "Accepted", "groupIdToken": GROUP})


def test_offline_list_status_other_than_accepted_refuses(env):
    """C13 with errata C13.FR.04: a list entry that is not Accepted is never charged on,
    not even with OfflineTxForUnknownIdEnabled, while an unknown token is."""
    env.send(1, "Full", [entry(CARD, "Blocked")])
    env.cache.update(CARD, accepted())
    env.link.connected = False
    env.set("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "true")
    assert env.decide().status == "Blocked"
    assert env.decide(tok("UNKNOWN1")).unknown_offline


def test_expired_list_entry_counts_as_expired(env):
    """cacheExpiryDateTime in the past: the entry is Expired for local decisions."""
    soon = format_datetime(env.clock.now() + timedelta(seconds=60))
    env.send(1, "Full", [entry(CARD, cacheExpiryDateTime=soon)])
    env.link.connected = False
    assert env.decide().accepted
    asyncio.run(env.clock.advance(61))
    assert env.decide().status == "Expired"


def test_local_pre_authorize_from_the_list_without_a_round_trip(env):
    """C14.FR.01/02: online with LocalPreAuthorize, a valid list entry starts at once."""
    env.set("AuthCtrlr", "LocalPreAuthorize", "true")
    env.send(1, "Full", [entry(CARD)])
    env.link.answer = lambda payload: {"idTokenInfo": {"status": "Blocked"}}
    assert env.decide().accepted and env.authorize_sent() == 0
    env.set("AuthCtrlr", "LocalPreAuthorize", "false")
    assert env.decide().status == "Blocked" and env.authorize_sent() == 1


def test_post_authorize_a_list_rejection_unless_disabled(env):
    """C14.FR.03: a list entry other than Accepted is asked about; the CSMS's answer
    decides. LocalAuthListCtrlr.DisablePostAuthorize: the list's status is the answer."""
    env.set("AuthCtrlr", "LocalPreAuthorize", "true")
    env.send(1, "Full", [entry(CARD, "Blocked")])
    env.link.answer = lambda payload: {"idTokenInfo": {"status": "Accepted"}}
    assert env.decide().accepted and env.authorize_sent() == 1
    env.set("LocalAuthListCtrlr", "DisablePostAuthorize", "true")
    d = env.decide()
    assert d.status == "Blocked" and d.from_cache and env.authorize_sent() == 1
    # The cache's own setting does not govern list entries.
    env.set("LocalAuthListCtrlr", "DisablePostAuthorize", "false")
    env.set("AuthCacheCtrlr", "DisablePostAuthorize", "true")
    assert env.decide().accepted and env.authorize_sent() == 2


def test_tokens_in_the_list_are_not_cached(env):
    """The list and the cache stay distinct: the CSMS's answer about a listed token is
    used, not cached; an unlisted token's answer is cached."""
    env.send(1, "Full", [entry(CARD)])
    env.link.answer = lambda payload: {"idTokenInfo": {"status": "Accepted"}}
    assert env.decide().accepted and env.decide(OTHER).accepted
    env.auth.cache_update(CARD, {"status": "Blocked"})
    assert env.cache.lookup(CARD) is None
    assert env.cache.lookup(OTHER) is not None


def test_a_card_leaving_the_list_leaves_no_cached_copy(env):
    """The list and the cache stay distinct: a card cached before the CSMS listed it is
    decided by the list while listed; when a Differential removes it, its old cached
    Accepted goes too (a card removed from the list is as unknown as the CSMS made it),
    and AuthCacheCtrlr.Storage says so. Removing a card the list never held leaves the
    cache's own entry alone."""
    env.cache.update(CARD, accepted())                   # cached before it was listed
    env.cache.update(OTHER, accepted())                  # never listed
    cached = int(env.model.get_str("AuthCacheCtrlr", "Storage"))
    env.send(1, "Full", [entry(CARD, "Blocked")])
    env.link.connected = False
    env.set("AuthCtrlr", "LocalAuthorizeOffline", "true")
    assert env.decide().status == "Blocked"              # the list first
    env.send(2, "Differential", [entry(CARD, None), entry(OTHER, None)])
    assert env.cache.lookup(CARD) is None
    assert env.decide().status == "Invalid"              # unknown, not the cache's Accepted
    assert env.decide(OTHER).accepted
    assert 0 < int(env.model.get_str("AuthCacheCtrlr", "Storage")) < cached


def test_a_full_update_takes_the_cached_copies_of_the_old_list(env):
    """A Full replaces the list: the cached copies of the cards of the list it replaces
    go with it (those still listed were shadowed by their entries anyway)."""
    third = tok("0000THIRD")
    env.cache.update(CARD, accepted())
    env.cache.update(third, accepted())
    env.send(1, "Full", [entry(CARD), entry(OTHER)])
    env.send(2, "Full", [entry(OTHER)])
    assert env.cache.lookup(CARD) is None
    assert env.cache.lookup(third) is not None           # never listed: the cache's own
    env.link.connected = False
    env.set("AuthCtrlr", "LocalAuthorizeOffline", "true")
    assert env.decide().status == "Invalid" and env.decide(third).accepted


def test_clear_cache_leaves_the_list(env):
    """ClearCache (C11) empties the cache only: the list and its version stay."""
    env.send(3, "Full", [entry(CARD)])
    env.cache.update(OTHER, accepted())
    answer = asyncio.run(env.router.routes["ClearCache"].handler({}))
    assert answer == {"status": "Accepted"} and env.cache.lookup(OTHER) is None
    assert env.version() == 3 and tokens(env) == {CARD["idToken"]: "Accepted"}


def test_list_entry_for_other_evses_is_not_allowed_here(env):
    """idTokenInfo.evseId from the list: only valid for those EVSEs."""
    env.send(1, "Full", [entry(CARD, evseId=[2])])
    env.link.connected = False
    assert env.decide(evse_id=2).accepted
    assert env.decide(evse_id=1).status == "NotAllowedTypeEVSE"


def test_without_local_authorize_offline_a_listed_card_keeps_its_restrictions(env):
    """Offline, LocalAuthorizeOffline false, OfflineTxForUnknownIdEnabled true: a listed
    Accepted card goes as an unknown one would (C15), but is not let in where its entry
    says it is not valid (evseId), and keeps its groupIdToken (to end its session by
    group)."""
    env.send(1, "Full", [entry(CARD, evseId=[2], groupIdToken=GROUP)])
    env.link.connected = False
    env.set("AuthCtrlr", "LocalAuthorizeOffline", "false")
    env.set("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "true")
    assert env.decide(evse_id=1).status == "NotAllowedTypeEVSE"
    d = env.decide(evse_id=2)
    assert d.accepted and d.unknown_offline and d.info["groupIdToken"] == GROUP
    assert env.decide(OTHER, evse_id=1).unknown_offline


def test_disable_remote_authorization_uses_the_list(env):
    """AuthCtrlr.DisableRemoteAuthorization: the list decides, nothing is asked."""
    env.set("AuthCtrlr", "DisableRemoteAuthorization", "true")
    env.send(1, "Full", [entry(CARD), entry(OTHER, "NoCredit")])
    assert env.decide().accepted
    assert env.decide(OTHER).status == "NoCredit"
    assert env.authorize_sent() == 0


def test_stored_rows_are_what_was_sent(env):
    """The idTokenInfo comes back exactly as the CSMS sent it (personalMessage,
    language, evseId ...), whatever it holds."""
    info = {"status": "Accepted", "language1": "nl", "evseId": [1, 2],
            "personalMessage": {"format": "UTF8", "content": "Welkom"}}
    env.send(1, "Full", [{"idToken": CARD, "idTokenInfo": info}])
    assert env.list.lookup(CARD) == info
    assert json.loads(env.store.query("SELECT info FROM local_auth_list")[0][0]) == info
