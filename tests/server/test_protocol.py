"""The daemon's protocol without sockets: messages in, requests or errors out, driven
synchronously with a made-up clock."""

from __future__ import annotations

import json

import pytest

from streamer import errors
from streamer.errors import ProtocolError
from streamer.server.options import ServerLimits
from streamer.server.protocol import (
    POLICY,
    TRY_LATER,
    Audio,
    Gate,
    Hello,
    LogLimiter,
    Protocol,
    Request,
    State,
    error_message,
)

HELLO = {"type": "hello", "role": "stream", "sample_rate": 16000}


def code_of(protocol: Protocol, message, now: float = 0.0) -> str:
    with pytest.raises(ProtocolError) as raised:
        protocol.receive(message if isinstance(message, (str, bytes)) else json.dumps(message), now)
    assert raised.value.code and "\n" not in str(raised.value)
    return raised.value.code


def opened(**hello) -> Protocol:
    protocol = Protocol(ServerLimits())
    message = protocol.receive(json.dumps({**HELLO, **hello}), 0.0)
    protocol.accept(message)
    return protocol


def test_a_connection_goes_from_hello_to_open_to_closing():
    protocol = Protocol(ServerLimits())
    assert protocol.state is State.HELLO
    assert code_of(protocol, {"type": "status"}) == "not_ready"
    assert code_of(protocol, b"\x00\x00") == "not_ready"
    hello = protocol.receive(json.dumps({**HELLO, "stream": "desk", "events": True, "id": 1}), 0)
    assert isinstance(hello, Hello) and hello.stream == "desk" and hello.events and hello.id == 1
    assert hello.audio_format.sample_rate == 16000 and hello.audio_format.format == "int16"
    protocol.accept(hello)
    assert protocol.state is State.OPEN and protocol.streaming
    assert protocol.receive(b"\x00\x00", 1.0) == Audio(b"\x00\x00")
    assert code_of(protocol, {"type": "hello", "role": "control"}) == "bad_message"
    end = protocol.receive('{"type": "end", "id": "e"}', 2.0)
    assert end == Request("end", "e")
    protocol.stream_ended()
    assert code_of(protocol, b"\x00\x00") == "no_stream"
    protocol.closing()
    assert protocol.state is State.CLOSING and protocol.next_check(3.0) is None


@pytest.mark.parametrize(
    "message, code",
    [
        ("[" * 100_000, "bad_json"),  # RecursionError inside json.loads
        ('{"a":' * 50_000 + "1" + "}" * 50_000, "bad_json"),
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"hello"', "bad_json"),
        ({"type": ["hello"]}, "unknown_type"),  # unhashable type
        ({"type": {"a": 1}}, "unknown_type"),
        ({**HELLO, "format": ["int16"]}, "bad_format"),  # TypeError: unhashable type
        ({**HELLO, "format": {"x": 1}}, "bad_format"),
        ({**HELLO, "format": None}, "bad_format"),
        ({**HELLO, "sample_rate": [16000]}, "bad_sample_rate"),
        ({**HELLO, "sample_rate": True}, "bad_sample_rate"),
        ({**HELLO, "sample_rate": float("nan")}, "bad_sample_rate"),
        ({**HELLO, "channels": [1]}, "bad_channels"),
        ({**HELLO, "channels": 1.5}, "bad_channels"),
        ({**HELLO, "role": ["stream"]}, "bad_message"),
        ({**HELLO, "role": None}, "bad_message"),
        ({**HELLO, "protocol": [1]}, "bad_message"),
        ({**HELLO, "protocol": True}, "bad_message"),
        ({**HELLO, "stream": ["s"]}, "bad_message"),
        ({**HELLO, "stream": 7}, "bad_message"),
        ({**HELLO, "events": "yes"}, "bad_message"),
        ({"type": "hello", "role": "subscribe", "streams": "all"}, "bad_message"),
        ({"type": "hello", "role": "subscribe", "streams": [["s"]]}, "bad_message"),
        ({"type": "hello", "role": "subscribe", "streams": []}, "bad_message"),
    ],
)
def test_malformed_hellos_get_their_error_code_and_the_connection_waits(message, code):
    protocol = Protocol(ServerLimits())
    assert code_of(protocol, message) == code
    assert protocol.state is State.HELLO  # it may still say a good hello
    assert isinstance(protocol.receive(json.dumps(HELLO), 0.0), Hello)


@pytest.mark.parametrize(
    "message, code",
    [
        ({"type": "enroll"}, "bad_message"),
        ({"type": "enroll", "name": ["a"]}, "bad_message"),
        ({"type": "enroll", "name": "a", "seconds": "10"}, "bad_message"),
        ({"type": "enroll", "name": "a", "seconds": 1e308}, "bad_message"),
        ({"type": "enroll", "name": "a", "force": 1}, "bad_message"),
        ({"type": "enroll", "name": "a", "stream": {"x": 1}}, "bad_message"),
        ({"type": "rename", "name": "a"}, "bad_message"),
        ({"type": "rename", "name": "a", "new_name": 5}, "bad_message"),
        ({"type": "remove", "name": ""}, "bad_message"),
        ({"type": "promote", "name": "a"}, "bad_message"),
        ({"type": "cancel", "stream": "../x"}, "bad_message"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": None}, "unknown_type"),
        ({}, "unknown_type"),
    ],
)
def test_malformed_requests_get_their_error_code(message, code):
    protocol = opened()
    assert code_of(protocol, message) == code
    assert protocol.receive('{"type": "status"}', 0.0) == Request("status")


def test_errors_carry_the_id_of_the_request_they_answer():
    with pytest.raises(ProtocolError) as raised:
        Protocol(ServerLimits()).receive('{"type": "status", "id": "probe"}', 0.0)
    assert raised.value.code == "not_ready" and raised.value.request_id == "probe"
    with pytest.raises(ProtocolError) as raised:
        opened().receive('{"type": "enroll", "id": 3}', 0.0)
    assert raised.value.request_id == 3


def test_requests_come_out_typed():
    protocol = opened()
    enroll = {"type": "enroll", "name": "carol", "seconds": 6, "force": True, "stream": "s"}
    assert protocol.receive(json.dumps({**enroll, "id": [1]}), 0) == Request(
        "enroll", [1], "s", name="carol", seconds=6.0, force=True
    )
    promote = {"type": "promote", "label": "speaker-1", "name": "dave"}
    assert protocol.receive(json.dumps(promote), 0) == Request(
        "promote", name="dave", label="speaker-1"
    )


def test_frames_over_the_limit_are_refused_before_parsing():
    protocol = Protocol(ServerLimits(max_frame_bytes=1000))
    assert code_of(protocol, bytes(1001)) == "frame_too_large"
    assert code_of(protocol, "[" * 1001) == "frame_too_large"


def test_tokens_from_the_hello_or_the_handshake():
    hello = json.dumps({"type": "hello", "role": "control"})
    with pytest.raises(ProtocolError) as raised:
        Protocol(ServerLimits(), token="secret-token").receive(hello, 0)
    assert raised.value.code == "unauthorized" and raised.value.close_code == POLICY
    wrong = json.dumps({"type": "hello", "role": "control", "token": ["secret-token"]})
    with pytest.raises(ProtocolError):
        Protocol(ServerLimits(), token="secret-token").receive(wrong, 0)
    early = Protocol(ServerLimits(), token="secret-token", handshake_token="secret-token")
    assert early.authenticated_early and isinstance(early.receive(hello, 0), Hello)
    assert not Protocol(ServerLimits()).authenticated_early  # no token: the hello decides


def test_hello_and_idle_deadlines():
    limits = ServerLimits(hello_timeout_s=2.0, idle_timeout_s=5.0)
    protocol = Protocol(limits, now=100.0)
    assert protocol.next_check(100.0) == 102.0
    assert protocol.expired(101.9) is None
    error = protocol.expired(102.0)
    assert error.code == "hello_timeout" and error.close_code == POLICY
    protocol.accept(protocol.receive(json.dumps(HELLO), 101.0))
    protocol.handled(101.0)
    assert protocol.next_check(101.0) == 106.0
    protocol.receive(b"\x00\x00", 104.0)  # handling it takes long (backpressure)
    assert protocol.expired(200.0) is None and protocol.next_check(200.0) == 205.0
    protocol.handled(200.0)
    assert protocol.expired(205.0).code == "idle_timeout"
    listener = Protocol(limits)
    listener.accept(listener.receive('{"type": "hello", "role": "subscribe"}', 0))
    assert listener.next_check(1e9) is None  # subscribers only listen


def test_the_message_rate_is_a_token_bucket():
    protocol = Protocol(ServerLimits(max_messages_per_s=10))
    waits = [protocol.throttle(0.0) for _ in range(12)]
    assert waits[:10] == [0.0] * 10  # a burst of a second's worth
    assert waits[10] == pytest.approx(0.1) and waits[11] == pytest.approx(0.2)
    assert protocol.throttle(10.0) == 0.0  # refilled


def test_error_codes_come_from_the_exception_classes():
    for cls, code in [
        (errors.AudioError, "audio"),
        (errors.ProfileError, "profile"),
        (errors.ModelError, "model"),
        (errors.ConfigError, "config"),
        (errors.NoSpeechError, "no_voice"),
        (errors.EngineError, "engine"),
        (errors.StreamerError, "error"),
    ]:
        assert error_message(cls("what\nto do"), 7) == {
            "type": "error",
            "code": code,
            "message": "what to do",
            "id": 7,
        }
    assert error_message(ProtocolError("busy", "wait"))["code"] == "busy"


def test_the_gate_lets_a_prompt_client_in_past_an_idle_flood():
    limits = ServerLimits(max_connections=3, max_pending_connections=4, max_pending_per_address=2)
    gate = Gate(limits)
    assert gate.arrive("a1", "10.0.0.1") == []
    assert gate.arrive("a2", "10.0.0.1") == []
    assert gate.arrive("a3", "10.0.0.1") == ["a1"]  # per address: its own oldest goes
    assert gate.arrive("b1", "10.0.0.2") == []
    assert gate.arrive("c1", "10.0.0.3") == []
    assert gate.arrive("d1", "10.0.0.4") == ["a2"]  # all full: the busiest address pays
    assert list(gate.pending) == ["a3", "b1", "c1", "d1"]
    assert gate.accept("d1") and gate.accept("c1") and gate.accept("b1")
    assert not gate.accept("a3")  # max_connections reached
    assert gate.full_error().close_code == TRY_LATER
    gate.leave("b1")
    assert gate.accept("a3") and gate.accept("a3")  # accepting twice is harmless


def test_log_lines_are_rate_limited():
    limiter = LogLimiter(interval_s=10.0)
    assert limiter.note(0.0) == 0
    assert [limiter.note(t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert limiter.note(10.0) == 3
