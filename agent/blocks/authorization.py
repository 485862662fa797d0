"""Authorization (block C): is this idToken allowed to charge here, now?

One question, `authorize()`, asked by whoever starts or stops a session (the transactions
block for a card swipe, a remote start when AuthorizeRemoteStart says so). The answer is a
`Decision`: the idTokenInfo to act on, which stays a clean wire dict, plus how it was
reached, which the transactions block needs (a session started offline for an unknown
token must be checked against the TransactionEventResponse later, C15).

The order of the rules (OCPP 2.0.1 edition 2 with the errata of 2023-12):
1. AuthCtrlr.Enabled false: every token is Accepted, nothing is asked (appendix 3, AuthCtrlr
   Enabled). idToken type NoAuthorization: Accepted, nothing is asked (C02; errata 6.1.1: no
   AuthorizeRequest is expected for it). Type Central: Accepted, nothing is asked; the CSMS
   generated it for its own remote start, whether to authorize remote starts at all is
   AuthCtrlr.AuthorizeRemoteStart (C05), which the caller applies through
   `needs_authorize_for_remote_start()`.
2. Online (registered connection):
   - AuthCtrlr.DisableRemoteAuthorization: no AuthorizeRequest; the local data decide, an
     unknown token is Invalid.
   - AuthCtrlr.LocalPreAuthorize and a valid (Accepted, not expired) entry in the Local
     Authorization List (when one is plugged in) or the Authorization Cache: Accepted at once
     (C12.FR.02, C14). An entry with another status is asked about again (post-authorize,
     C10.FR.03/C12.FR.05) unless AuthCacheCtrlr.DisablePostAuthorize, then its status is the
     answer.
   - Otherwise AuthorizeRequest (C01); the answer's idTokenInfo is the decision and goes into
     the cache (C10).
3. Offline (not connected or not registered, or the AuthorizeRequest times out or the link
   drops under it):
   - AuthCtrlr.LocalAuthorizeOffline and the token in the local list or cache: its status,
     Accepted only while valid (C12, C13). A Blocked/Expired/Invalid/... entry is never turned
     into Accepted.
   - OfflineTxForUnknownIdEnabled: Accepted for a token present in neither the cache nor the
     local list (C15, errata C13.FR.04), `Decision.offline` set, `from_cache` not: the caller
     knows it was unknown-offline. A known, valid token when LocalAuthorizeOffline is false
     gets the same (it cannot fare worse than an unknown one), with its entry's evseId
     and groupIdToken (nor better: an entry valid only at other EVSEs is not turned into
     Accepted here).
   - Otherwise Invalid.
   A CALLERROR or an invalid answer to AuthorizeRequest is not "offline": the CSMS is there
   but could not decide. The local data decide as offline, but an unknown token is Invalid.
4. An Accepted idTokenInfo that lists evseId without the EVSE asked about becomes
   NotAllowedTypeEVSE for that EVSE (idTokenInfo.evseId: "only valid for these EVSEs").

A cacheExpiryDateTime in the past makes a cache (or local list) entry count as Expired for
local decisions. The CSMS's own fresh answer is honoured as given: it is the CSMS's decision
for now, and the past expiry only keeps it from being reused locally.

The Local Authorization List and the cache together (D, C13, C14): the list is looked up
first and, when it holds the token, its entry decides (its status, expiry, groupIdToken
and evseId); the cache is not consulted then. The two stay distinct: a token known in the
list is not added to the cache (as OCPP 1.6 §3.5.3 states it; in 2.0.1 too the list is
the CSMS's alone to change), and a copy cached before the token was listed goes when
the token leaves the list (agent/blocks/local_auth_list.py): no stale copy stays behind.
The list's own DisablePostAuthorize (LocalAuthListCtrlr) governs its entries (C14.FR.03),
the cache's (AuthCacheCtrlr) the cache's (C10.FR.03, C12.FR.05).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from agent.blocks.auth_cache import AuthCache, expiry_of
from agent.clock import Clock
from agent.model.device_model import DeviceModel
from agent.ocpp.connection import Messenger
from agent.ocpp.session import CallFailed, CallTimeout, NotConnected, Payload, Router
from agent.store import Store

log = logging.getLogger(__name__)

CTRLR = "AuthCtrlr"
_TOKEN_KEYS = ("idToken", "type", "additionalInfo", "customData")


class LocalList(Protocol):
    """The Local Authorization List as this block needs it (block D provides it)."""

    def lookup(self, id_token: Payload) -> Payload | None:
        """The idTokenInfo of this idToken in the list, or None (absent, list disabled)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of `Authorization.authorize`.

    info: an IdTokenInfoType dict, safe to put on the wire (a copy, never shared).
    offline: decided without the CSMS's answer (link down, timeout, failed call).
    from_cache: decided from local data: the Authorization Cache or the Local Authorization
        List.
    """

    info: dict[str, Any]
    offline: bool = False
    from_cache: bool = False

    @property
    def status(self) -> str:
        return str(self.info["status"])

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"

    @property
    def unknown_offline(self) -> bool:
        """Accepted offline only because OfflineTxForUnknownIdEnabled allows unknown tokens."""
        return self.offline and not self.from_cache and self.accepted


def same_id_token(a: Payload | None, b: Payload | None) -> bool:
    """Two IdTokenType values are the same token: idToken (a CiString, so case-insensitive)
    and type equal; additionalInfo does not count."""
    if not a or not b:
        return False
    ta, tb = a.get("idToken"), b.get("idToken")
    return (isinstance(ta, str) and isinstance(tb, str) and ta.lower() == tb.lower()
            and a.get("type") == b.get("type"))


def _group_of(value: Payload | None) -> Payload | None:
    """The group token of an idTokenInfo, or the value itself if it is an IdTokenType."""
    if not value:
        return None
    if "status" in value:
        return value.get("groupIdToken")
    return value if "idToken" in value else None


def _wire_token(id_token: Payload) -> Payload:
    return {k: copy.deepcopy(id_token[k]) for k in _TOKEN_KEYS if k in id_token}


class Authorization:
    def __init__(self, link: Messenger, router: Router, model: DeviceModel, clock: Clock,
                 store: Store, cache: AuthCache | None, *,
                 local_list: LocalList | None = None) -> None:
        self._link = link
        self._router = router       # block C answers no CSMS calls itself (ClearCache: cache)
        self._model = model
        self._clock = clock
        self._store = store
        self._cache = cache
        self._local_list = local_list

    # -- settings ---------------------------------------------------------------------------

    def _flag(self, name: str, default: bool = False) -> bool:
        try:
            return self._model.get_bool(CTRLR, name)
        except KeyError:
            return default

    def needs_authorize_for_remote_start(self) -> bool:
        """AuthCtrlr.AuthorizeRemoteStart: authorize a RequestStartTransaction's idToken first."""
        return self._flag("AuthorizeRemoteStart")

    def without_token(self) -> dict[str, str] | None:
        """The idToken of a session started with no idToken presented, when AuthCtrlr.Enabled
        is false: "no authorization is done before starting a transaction ... If no idToken
        was provided, then idToken in TransactionEventRequest will be left empty and type is
        set to NoAuthorization" (appendix 3; errata 6.1.1: idToken ""). None while
        authorization is enabled: then a session needs a token."""
        if self._flag("Enabled", True):
            return None
        return {"idToken": "", "type": "NoAuthorization"}

    # -- the decision -----------------------------------------------------------------------

    async def authorize(self, id_token: Payload, *, evse_id: int | None = None) -> Decision:
        decision = await self._decide(id_token)
        return _for_evse(decision, evse_id)

    async def _decide(self, id_token: Payload) -> Decision:
        if not self._flag("Enabled", True):
            return Decision({"status": "Accepted"})
        type_ = id_token.get("type")
        if type_ in ("NoAuthorization", "Central"):
            return Decision({"status": "Accepted"})

        if self._link.connected:
            if self._flag("DisableRemoteAuthorization"):
                local = self._local(id_token)
                if local is not None:
                    return self._from_local(id_token, local)
                return Decision({"status": "Invalid"})
            if self._flag("LocalPreAuthorize"):
                local = self._local(id_token)
                if local is not None and (local[0]["status"] == "Accepted"
                                          or self._post_authorize_disabled(local[1])):
                    return self._from_local(id_token, local)
            try:
                answer = await self._link.call("Authorize", {"idToken": _wire_token(id_token)},
                                               wait=False)
            except (NotConnected, CallTimeout) as exc:
                log.info("Authorize not answered (%s): deciding offline", exc)
                return self._offline(id_token, unknown_allowed=True)
            except CallFailed as exc:
                log.warning("Authorize failed (%s): deciding from local data", exc)
                return self._offline(id_token, unknown_allowed=False)
            info = answer.get("idTokenInfo") if isinstance(answer, dict) else None
            if not isinstance(info, dict) or not isinstance(info.get("status"), str):
                log.warning("Authorize answer without idTokenInfo.status: deciding from local data")
                return self._offline(id_token, unknown_allowed=False)
            self._remember(id_token, info)
            return Decision(copy.deepcopy(info))

        return self._offline(id_token, unknown_allowed=True)

    def _offline(self, id_token: Payload, *, unknown_allowed: bool) -> Decision:
        local = self._local(id_token)
        if local is not None and local[0]["status"] != "Accepted":
            # Known and not valid: never turned into Accepted, whatever the settings.
            return self._from_local(id_token, local, offline=True)
        if local is not None and self._flag("LocalAuthorizeOffline"):
            return self._from_local(id_token, local, offline=True)
        if unknown_allowed and self._flag("OfflineTxForUnknownIdEnabled"):
            # A known, valid token goes as an unknown one would, but keeps what its entry
            # restricts or adds: evseId (not valid at other EVSEs) and groupIdToken.
            return Decision(local[0] if local is not None else {"status": "Accepted"},
                            offline=True)
        return Decision({"status": "Invalid"}, offline=True)

    def _local(self, id_token: Payload) -> tuple[dict[str, Any], str] | None:
        """What the local list, else the cache, says of this token, and which one said it
        ("list" or "cache"); the status is Expired once cacheExpiryDateTime has passed."""
        if self._local_list is not None:
            info = self._local_list.lookup(id_token)
            if info is not None:
                info = copy.deepcopy(info)
                expiry = expiry_of(info)
                if expiry is not None and self._clock.now() > expiry:
                    info["status"] = "Expired"
                return info, "list"
        if self._cache is not None:
            entry = self._cache.lookup(id_token)
            if entry is not None:
                return entry.effective_info(), "cache"
        return None

    def known(self, id_token: Payload) -> dict[str, Any] | None:
        """The idTokenInfo the local list, else the cache, holds for this token while it
        is valid (Accepted, not expired), without asking the CSMS: where a reserved EVSE
        looks up a token's groupIdToken before an AuthorizeRequest (H03.FR.07/08, errata
        [684])."""
        local = self._local(id_token)
        return local[0] if local is not None and local[0]["status"] == "Accepted" else None

    def _from_local(self, id_token: Payload, local: tuple[dict[str, Any], str], *,
                    offline: bool = False) -> Decision:
        info, source = local
        if source == "cache" and self._cache is not None:
            self._cache.touch(id_token)   # LifeTime and LRU/LFU count from the last use
        return Decision(info, offline=offline, from_cache=True)

    def _post_authorize_disabled(self, source: str) -> bool:
        """DisablePostAuthorize of the list or cache the entry came from (C10.FR.03, C12.FR.05,
        and LocalAuthListCtrlr's for the list)."""
        if source == "cache":
            return self._cache is not None and self._cache.disable_post_authorize()
        try:
            return self._model.get_bool("LocalAuthListCtrlr", "DisablePostAuthorize")
        except KeyError:
            return False

    # -- groups and the master pass -----------------------------------------------------------

    def cache_update(self, id_token: Payload, id_token_info: Payload) -> None:
        """idTokenInfo from another answer (TransactionEvent): into the cache (C10)."""
        self._remember(id_token, id_token_info)

    def _remember(self, id_token: Payload, id_token_info: Payload) -> None:
        """The CSMS's answer into the cache, unless the Local Authorization List knows the
        token: the list's entry is what local decisions use for it."""
        if self._cache is None:
            return
        if self._local_list is not None and self._local_list.lookup(id_token) is not None:
            return
        self._cache.update(id_token, id_token_info)

    def same_group(self, a: Payload | None, b: Payload | None) -> bool:
        """Whether two tokens share a group (C09: one may stop the other's session). Takes
        idTokenInfo dicts (their groupIdToken counts) or groupIdToken dicts; no group on
        either side is not a shared group."""
        return same_id_token(_group_of(a), _group_of(b))

    def is_master_pass(self, id_token_info: Payload | None) -> bool:
        """groupIdToken equals AuthCtrlr.MasterPassGroupId (C16); never when that is empty."""
        try:
            master = self._model.get_str(CTRLR, "MasterPassGroupId")
        except KeyError:
            return False
        group = (id_token_info or {}).get("groupIdToken")
        token = group.get("idToken") if isinstance(group, dict) else None
        return bool(master) and isinstance(token, str) and token.lower() == master.lower()


def _for_evse(decision: Decision, evse_id: int | None) -> Decision:
    evses = decision.info.get("evseId")
    if evse_id is None or not decision.accepted or not evses or evse_id in evses:
        return decision
    info = dict(decision.info, status="NotAllowedTypeEVSE")
    return Decision(info, decision.offline, decision.from_cache)
