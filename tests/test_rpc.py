"""OCPP-J framing: what a CSMS sees when it sends us good or broken frames."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from agent.ocpp import rpc


def test_round_trip_of_each_frame_type():
    frames = [rpc.Call("a1", "Heartbeat", {}),
              rpc.CallResult("a1", {"currentTime": "2026-01-01T00:00:00Z"}),
              rpc.CallError("a1", "NotSupported", "no", {"x": 1})]
    for frame in frames:
        assert rpc.parse(rpc.encode(frame)) == frame


def test_encoding_is_compact_utf8_json():
    text = rpc.encode(rpc.Call("1", "DataTransfer", {"vendorId": "Ü", "data": "a b"}))
    assert text == '[2,"1","DataTransfer",{"vendorId":"Ü","data":"a b"}]'


def test_error_description_is_cut_to_255():
    text = rpc.encode(rpc.CallError("1", "GenericError", "x" * 400))
    assert len(json.loads(text)[3]) == 255


@pytest.mark.parametrize("text, code, message_id", [
    ("not json", "RpcFrameworkError", "-1"),
    ("{}", "RpcFrameworkError", "-1"),
    ("[]", "RpcFrameworkError", "-1"),
    ('[2, 17, "Heartbeat", {}]', "RpcFrameworkError", "-1"),
    ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', "RpcFrameworkError", "-1"),
    ('[2, "7", "Heartbeat"]', "RpcFrameworkError", "7"),
    ('[2, "7", 5, {}]', "RpcFrameworkError", "7"),
    ('[2, "7", "Heartbeat", []]', "FormatViolation", "7"),
    ('[2, "7", "Heartbeat", null]', "FormatViolation", "7"),
    ('[9, "7", "Heartbeat", {}]', "MessageTypeNotSupported", "7"),
    ('["2", "7", "Heartbeat", {}]', "RpcFrameworkError", "7"),
    ('[2, "7", "Heartbeat", {"a": NaN}]', "RpcFrameworkError", "-1"),
])
def test_broken_frames_get_the_callerror_part4_names(text, code, message_id):
    with pytest.raises(rpc.FrameError) as err:
        rpc.parse(text)
    assert err.value.reply is not None
    assert (err.value.reply.code, err.value.reply.message_id) == (code, message_id)
    assert err.value.reply.code in rpc.ERROR_CODES


@pytest.mark.parametrize("text", ['[3, "1"]', '[3, 1, {}]', '[4, "1", "X"]', '[3, "1", []]'])
def test_broken_answers_are_not_answered(text):
    # Answering a broken CALLRESULT/CALLERROR could start an endless exchange.
    with pytest.raises(rpc.FrameError) as err:
        rpc.parse(text)
    assert err.value.reply is None


def test_deeply_nested_json_is_a_clean_error():
    with pytest.raises(rpc.FrameError):
        rpc.parse("[" * 200_000 + "]" * 200_000)


def test_integers_too_long_for_int_are_read_as_infinite_not_as_broken_json():
    # Valid JSON (RFC 8259 sets no limit) that int() refuses beyond 4300 digits: it used to
    # be answered as unreadable with id "-1"; now it parses, and validation answers the
    # CALL by its id (TypeConstraintViolation, see test_session).
    digits = "1" + "0" * 5000
    call = rpc.parse(f'[2, "big", "GetCompositeSchedule", {{"duration": {digits}, '
                     f'"evseId": -{digits}}}]')
    assert call == rpc.Call("big", "GetCompositeSchedule",
                            {"duration": float("inf"), "evseId": float("-inf")})
    edge = "9" * rpc.MAX_INT_DIGITS
    assert rpc.parse(f'[2, "e", "X", {{"n": {edge}}}]').payload == {"n": int(edge)}


def test_binary_and_non_utf8_frames():
    with pytest.raises(rpc.FrameError):
        rpc.parse(b"\xff\xfe")
    assert rpc.parse('[2,"1","Heartbeat",{}]'.encode()) == rpc.Call("1", "Heartbeat", {})


def test_call_id_read_from_an_oversize_frame():
    assert rpc.call_id_prefix('[2, "abc-1", "SetVariables", {' + "x" * 10_000) == "abc-1"
    assert rpc.call_id_prefix("garbage") == "-1"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                              lambda c: st.lists(c) | st.dictionaries(st.text(), c))
                 .map(json.dumps)))
def test_parse_raises_nothing_but_frame_error(text):
    try:
        rpc.parse(text)
    except rpc.FrameError:
        pass


def test_a_lone_surrogate_escape_in_a_call_is_a_format_violation():
    # Valid JSON, but no Unicode text: a station that kept it could never send the
    # TransactionEvent that repeats the token (UTF-8 cannot encode it).
    with pytest.raises(rpc.FrameError) as caught:
        rpc.parse('[2,"7","RequestStartTransaction",{"idToken":{"idToken":"A\\ud800","type":"ISO14443"},"remoteStartId":1}]')
    assert (caught.value.reply.code, caught.value.reply.message_id) == ("FormatViolation", "7")
    rpc.encode(caught.value.reply).encode("utf-8")  # the refusal itself can be sent
    with pytest.raises(rpc.FrameError) as caught:
        rpc.parse('[2,"\\udfff","Heartbeat",{}]')
    assert caught.value.reply.message_id == "-1"
    with pytest.raises(rpc.FrameError) as caught:
        rpc.parse('[3,"7",{"idTokenInfo":{"status":"Accepted","groupIdToken":{"idToken":"\\uDBFF","type":"Central"}}}]')
    assert caught.value.reply is None


def test_surrogate_pairs_and_escaped_backslashes_are_text():
    assert rpc.parse('[2,"7","DataTransfer",{"vendorId":"\\ud83d\\ude00"}]').payload == {"vendorId": "\U0001F600"}
    assert rpc.parse('[2,"7","DataTransfer",{"vendorId":"\\\\ud800"}]').payload == {"vendorId": "\\ud800"}


def test_a_lone_surrogate_already_inside_is_sent_escaped():
    text = rpc.encode(rpc.Call("1", "TransactionEvent", {"idToken": {"idToken": "A\ud800"}}))
    text.encode("utf-8")
    assert json.loads(text)[3] == {"idToken": {"idToken": "A\ud800"}}
