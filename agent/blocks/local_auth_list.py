"""The Local Authorization List (block D, use cases D01 and D02): the cards the CSMS wants
this station to know by itself.

Why: a public site's cards keep working while the link is down (C13) and, if the operator
wants it, start at once without a round trip (C14). Unlike the Authorization Cache, the
list is the CSMS's to manage: the station never adds, changes or drops an entry of its own.

Rules, with the requirement ids of OCPP 2.0.1 edition 2 (Part 2 D01/D02):
- SendLocalList versionNumber must be above 0 (D01.FR.18: 0 means "no list"): Failed,
  ValuePositiveOnly (Appendix 5: "Provided value is not greater than zero").
- Full replaces the list; without entries it empties it (D01.FR.04). Every entry of a Full
  update carries idTokenInfo (there is nothing to remove from a list being replaced).
- Differential: entries with idTokenInfo are added or replace the one of their idToken
  (D01.FR.16), entries without are removed (D01.FR.17); no entries changes only the
  version (D01.FR.05). A versionNumber not above the installed one is VersionMismatch
  (D01.FR.19), and nothing changes.
- An idToken twice in one request (D01.FR.06): Failed. "Twice" as the table's key sees
  it: the idToken without ASCII case (SQLite's NOCASE), the type exact.
- More entries than ItemsPerMessage: Failed, TooManyElements; a frame over
  BytesPerMessage: FormatViolation, before the handler sees it (as the other *PerMessage
  limits, agent/blocks/variables.py). A result over Entries' or Storage's maxLimit:
  Failed, OutOfStorage.
- The list could not be stored (the disk is full, an I/O error): Failed (OutOfStorage or
  InternalError as statusInfo), the old list in force; the CSMS's answer says what
  happened, never a CALLERROR InternalError. An entry holding a string that is no Unicode
  text (a lone surrogate, which JSON's \\u escapes can carry) is Failed, InvalidValue: as
  an idToken SQLite cannot bind it, and anywhere (a groupIdToken, a personalMessage) it
  could not be sent again in UTF-8 (a CustomerInformation report quotes the entry).
- The list and the Authorization Cache are distinct (as OCPP 1.6 section 3.5.3 words it:
  "Identifiers known in the Local Authorization List SHALL NOT be added to the
  Authorization Cache", and list entries have priority): agent/blocks/authorization.py
  never caches a listed token and asks the list first. A cache entry made before the token
  was listed is shadowed while it is listed, and removed when the token leaves the list (a
  Differential without idTokenInfo, or a Full replacing the list it was in): the CSMS's
  latest word on the token is then the removal, and an older cached Accepted must not
  outlive it (CSMSs revoke cards by removing them). AuthCacheCtrlr.Storage follows.
- LocalAuthListCtrlr.Enabled false: the list is not consulted, SendLocalList is Failed
  (NotEnabled) and GetLocalListVersion answers 0 (D02.FR.03); the entries and version stay
  for when it is enabled again.

A list for a public site is tens of thousands of cards, sent as a Full update of
ItemsPerMessage entries followed by Differential ones (each with the next versionNumber).
Each SendLocalList is one store transaction: list, version and counters commit together
or not at all, so a failed request or a power cut in the middle of one leaves the list
and version that were in force before it, and the version the station then reports tells
the CSMS exactly what it holds. Lookups are one indexed SQL query: the list never lives in
memory (bench/local_list.py measures it).

An idToken is a CiString: the key is (idToken compared case-insensitively, type), as in
the cache. The size counted for Storage is the cache's honest estimate of a row
(auth_cache.entry_size).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import string
from dataclasses import dataclass
from typing import Any

from agent.blocks.auth_cache import entry_size
from agent.model.device_model import DeviceModel
from agent.model.types import Component, Variable
from agent.ocpp.session import Payload, Router
from agent.store import Store

log = logging.getLogger(__name__)

CTRLR = "LocalAuthListCtrlr"
# OCPP's integer is 32-bit signed (Part 2, primitive datatypes): a larger versionNumber is
# no version a CSMS can mean, and would not fit the store's column either.
MAX_VERSION = 2**31 - 1
# The table's key compares idTokens as SQLite's NOCASE does: ASCII letters folded, no
# others. The duplicate check (D01.FR.06) folds the same way, or two tokens the table
# keeps apart (say "K1" and "\u212a1", KELVIN SIGN) would be refused as one.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_auth_list (
    id_token TEXT    NOT NULL COLLATE NOCASE,  -- IdTokenType.idToken (a CiString)
    type     TEXT    NOT NULL,                 -- IdTokenType.type
    info     TEXT    NOT NULL,                 -- idTokenInfo, compact JSON
    size     INTEGER NOT NULL,                 -- estimated bytes (Storage)
    PRIMARY KEY (id_token, type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS local_auth_list_state (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    version  INTEGER NOT NULL,                 -- versionNumber in force, 0: none yet
    entries  INTEGER NOT NULL,                 -- rows of local_auth_list
    bytes    INTEGER NOT NULL                  -- SUM(size) of local_auth_list
);
INSERT OR IGNORE INTO local_auth_list_state (one, version, entries, bytes) VALUES (1, 0, 0, 0);
"""
# Authorization Cache entries (agent/blocks/auth_cache.py's table) of the tokens the list
# holds; the list's key with its NOCASE collation decides the match (and its index serves).
_FORGET_LISTED = """
DELETE FROM auth_cache WHERE EXISTS (
    SELECT 1 FROM local_auth_list AS l WHERE l.id_token = auth_cache.id_token
                                         AND l.type = auth_cache.type)
"""


@dataclass(frozen=True)
class ListState:
    version: int
    entries: int
    bytes: int


class Refused(Exception):
    """A SendLocalList that changes nothing: its status and reason."""

    def __init__(self, status: str, reason: str, info: str) -> None:
        super().__init__(info)
        self.status = status
        self.reason = reason
        self.info = info

    def answer(self) -> Payload:
        return {"status": self.status,
                "statusInfo": {"reasonCode": self.reason, "additionalInfo": self.info[:512]}}


class LocalAuthList:
    def __init__(self, router: Router | None, model: DeviceModel, store: Store) -> None:
        self._model = model
        self._store = store
        store.ensure_schema(_SCHEMA)
        if router is not None:
            router.register("SendLocalList", self._on_send_local_list,
                            max_bytes=lambda: self._setting("BytesPerMessage", 0) or 1 << 20)
            router.register("GetLocalListVersion", self._on_get_local_list_version)
        self._report(self.state())

    # -- settings ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        try:
            return self._model.get_bool(CTRLR, "Enabled")
        except KeyError:
            return False

    def _setting(self, name: str, default: int) -> int:
        try:
            return self._model.get_int(CTRLR, name)
        except (KeyError, ValueError):
            return default

    def _max_limit(self, name: str) -> int | None:
        try:
            definition = self._model.definition(Component(CTRLR), Variable(name))
        except KeyError:
            return None
        limit = definition.characteristics.max_limit
        return None if limit is None else int(limit)

    # -- reading ----------------------------------------------------------------------------

    def lookup(self, id_token: Payload) -> Payload | None:
        """The idTokenInfo the list holds for this idToken, or None (absent, or the list is
        disabled). One primary-key lookup."""
        token, type_ = id_token.get("idToken"), id_token.get("type")
        if not isinstance(token, str) or not isinstance(type_, str) or not self.enabled:
            return None
        if not _is_text(token) or not _is_text(type_):
            return None   # never stored (see _apply), and SQLite cannot bind it
        rows = self._store.query(
            "SELECT info FROM local_auth_list WHERE id_token = ? AND type = ?", (token, type_))
        return json.loads(rows[0][0]) if rows else None

    def state(self) -> ListState:
        version, entries, size = self._store.query(
            "SELECT version, entries, bytes FROM local_auth_list_state WHERE one = 1")[0]
        return ListState(int(version), int(entries), int(size))

    def version(self) -> int:
        """What GetLocalListVersion answers: 0 while disabled (D02.FR.03) or before any
        list was sent (D02.FR.02)."""
        return self.state().version if self.enabled else 0

    # -- writing ----------------------------------------------------------------------------

    def apply(self, request: Payload) -> Payload:
        """Apply one SendLocalListRequest; returns the SendLocalListResponse payload."""
        try:
            state, evicted = self._apply(request)
        except Refused as refused:
            log.info("SendLocalList %s v%s: %s (%s)", request.get("updateType"),
                     request.get("versionNumber"), refused.status, refused.info)
            return refused.answer()
        except sqlite3.Error as exc:
            # The transaction rolled back: the list and version in force are the old ones,
            # and the CSMS learns the update failed (it may retry, or send a Full later).
            log.error("SendLocalList %s v%s could not be stored: %s", request.get("updateType"),
                      request.get("versionNumber"), exc)
            full = isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()
            return Refused("Failed", "OutOfStorage" if full else "InternalError",
                           f"the list could not be stored: {exc}").answer()
        log.info("SendLocalList %s v%d: %d entries installed", request["updateType"],
                 state.version, state.entries)
        self._report(state)
        if evicted:
            log.info("SendLocalList: %d cached idTokens left the list, removed from the "
                     "Authorization Cache", evicted)
            self._report_cache_storage()
        return {"status": "Accepted"}

    def _apply(self, request: Payload) -> tuple[ListState, int]:
        """The new state, and how many Authorization Cache entries were removed with
        tokens that left the list."""
        if not self.enabled:
            raise Refused("Failed", "NotEnabled", "LocalAuthListCtrlr.Enabled is false")
        version = request["versionNumber"]
        full = request["updateType"] == "Full"
        if version <= 0:
            raise Refused("Failed", "ValuePositiveOnly",
                          "versionNumber must be above 0 (D01.FR.18)")
        if version > MAX_VERSION:
            raise Refused("Failed", "InvalidValue", f"versionNumber above {MAX_VERSION}")
        items: list[Payload] = request.get("localAuthorizationList") or []
        most = self._setting("ItemsPerMessage", len(items))
        if len(items) > most:
            raise Refused("Failed", "TooManyElements",
                          f"{len(items)} entries exceed ItemsPerMessage {most}")
        seen: set[tuple[str, str]] = set()
        for item in items:
            token, type_ = item["idToken"]["idToken"], item["idToken"]["type"]
            if not _is_text(json.dumps(item, ensure_ascii=False)):
                raise Refused("Failed", "InvalidValue",
                              f"the entry of idToken {token!r} holds a string that is not "
                              "Unicode text (a lone surrogate)")
            key = (token.translate(_ASCII_LOWER), type_)
            if key in seen:
                raise Refused("Failed", "InvalidValue",
                              f"idToken {item['idToken']['idToken']!r} appears twice (D01.FR.06)")
            seen.add(key)
            if full and "idTokenInfo" not in item:
                raise Refused("Failed", "MissingParam",
                              "every entry of a Full update needs idTokenInfo")
        with self._store.transaction() as db:
            old = self.state()
            if not full and version <= old.version:
                raise Refused("VersionMismatch", "InvalidValue",
                              f"versionNumber {version} is not above the installed {old.version}")
            entries, size = (0, 0) if full else (old.entries, old.bytes)
            cache = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                               "AND name = 'auth_cache'").fetchone() is not None
            evicted = 0
            if full:
                if cache:
                    evicted += db.execute(_FORGET_LISTED).rowcount
                db.execute("DELETE FROM local_auth_list")
            for item in items:
                token, type_ = item["idToken"]["idToken"], item["idToken"]["type"]
                if not full:
                    row = db.execute("SELECT size FROM local_auth_list WHERE id_token = ? "
                                     "AND type = ?", (token, type_)).fetchone()
                    if row is not None:
                        db.execute("DELETE FROM local_auth_list WHERE id_token = ? AND type = ?",
                                   (token, type_))
                        entries, size = entries - 1, size - int(row[0])
                        if cache and "idTokenInfo" not in item:
                            evicted += db.execute(
                                "DELETE FROM auth_cache WHERE id_token = ? AND type = ?",
                                (token, type_)).rowcount
                info = item.get("idTokenInfo")
                if info is None:
                    continue
                info_json = json.dumps(info, separators=(",", ":"), sort_keys=True)
                row_size = entry_size(token, type_, str(info["status"]), info_json)
                db.execute("INSERT INTO local_auth_list (id_token, type, info, size) "
                           "VALUES (?, ?, ?, ?)", (token, type_, info_json, row_size))
                entries, size = entries + 1, size + row_size
            self._check_capacity(entries, size)
            db.execute("UPDATE local_auth_list_state SET version = ?, entries = ?, bytes = ? "
                       "WHERE one = 1", (version, entries, size))
        return ListState(version, entries, size), evicted

    def _check_capacity(self, entries: int, size: int) -> None:
        """Raises (so the transaction rolls back) when the list would hold more than
        Entries' or Storage's maxLimit."""
        most = self._max_limit("Entries")
        if most is not None and entries > most:
            raise Refused("Failed", "OutOfStorage",
                          f"{entries} entries exceed the Entries maxLimit {most}")
        most = self._max_limit("Storage")
        if most is not None and size > most:
            raise Refused("Failed", "OutOfStorage",
                          f"{size} bytes exceed the Storage maxLimit {most}")

    def _report_cache_storage(self) -> None:
        """AuthCacheCtrlr.Storage's Actual after entries left the cache's table here, as
        agent/blocks/auth_cache.py reports it (bytes in use, at most its maxLimit)."""
        component, variable = Component("AuthCacheCtrlr"), Variable("Storage")
        try:
            limit = self._model.definition(component, variable).characteristics.max_limit
        except KeyError:
            return
        used = int(self._store.query("SELECT COALESCE(SUM(size), 0) FROM auth_cache")[0][0])
        if limit is not None:
            used = min(used, int(limit))
        self._model.set_actual(component, variable, str(used))

    def _report(self, state: ListState) -> None:
        for name, value in (("Entries", state.entries), ("Storage", state.bytes)):
            try:
                self._model.set_actual(Component(CTRLR), Variable(name), str(value))
            except (KeyError, ValueError):
                pass   # the feature is not in this station's device model

    # -- CSMS -------------------------------------------------------------------------------

    async def _on_send_local_list(self, request: Payload) -> Payload:
        return self.apply(request)

    async def _on_get_local_list_version(self, request: Payload) -> Payload:
        return {"versionNumber": self.version()}


def _is_text(value: str) -> bool:
    """Whether `value` is Unicode text that UTF-8 (and so SQLite) can hold."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def entries_of(store: Store) -> list[dict[str, Any]]:
    """Every entry as AuthorizationData (diagnostics and tests; loads the whole list)."""
    rows = store.query("SELECT id_token, type, info FROM local_auth_list ORDER BY id_token")
    return [{"idToken": {"idToken": t, "type": ty}, "idTokenInfo": json.loads(i)}
            for t, ty, i in rows]
