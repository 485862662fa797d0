"""Part 6's preparations that name the Local Authorization List, for the cases of other
blocks that use them (the station has the list: agent/blocks/local_auth_list.py).

- Configuration State "LocalAuthListEnabled is true" / "LocalAuthListCtrlr.Enabled is set
  to true": `LIST_ENABLED`, for `rig.configure`.
- Memory State IdTokenLocalAuthList (Part 6 table 251): the OCTT sends a SendLocalList
  Full whose localAuthorizationList[0] is the token; the tool validation is status
  Accepted. `id_token_local_auth_list`.

Where a case names both IdTokenCached and IdTokenLocalAuthList, the cache is prepared
first (Part 6's order): the station does not copy a token the list holds into the cache,
so a session run after the list was sent would cache nothing. (A cached copy made before
stays, shadowed by the list entry, until the token leaves the list: then it goes too.)
"""

from __future__ import annotations

from tests.conformance.rig import VALID_TOKEN, Rig

LIST_ENABLED = {("LocalAuthListCtrlr", "Enabled"): "true"}


async def id_token_local_auth_list(rig: Rig, token: dict = VALID_TOKEN,
                                   group: dict | None = None, version: int = 1) -> None:
    """Memory State IdTokenLocalAuthList for `token` (with `group` as its GroupIdToken
    where the case names one): SendLocalList Full, answered Accepted; and the version the
    station then reports is that list's (the list is in force, not only acknowledged)."""
    info: dict = {"status": "Accepted"} | ({"groupIdToken": group} if group else {})
    answer = await rig.call("SendLocalList", {
        "versionNumber": version, "updateType": "Full",
        "localAuthorizationList": [{"idToken": token, "idTokenInfo": info}]})
    assert answer["status"] == "Accepted", answer
    assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": version}
