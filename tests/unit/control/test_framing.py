"""JSONSplitter: QEMU's bracket-counting framing, byte by byte and with garbage."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backend.control.framing import JSONSplitter
from backend.errors import ProtocolError

MESSAGES = [{"execute": "qmp_capabilities"},
            {"execute": "dm-create", "arguments": {"name": "a{[\"", "table": "0 8 zero\n"}},
            {"execute": "x", "id": [1, {"k": None, "t": True, "f": -1.5e3}]}]


def encode(msgs: list[object]) -> bytes:
    import json

    return b"".join(json.dumps(m).encode() for m in msgs)  # no separators, like qemu.qmp


def test_back_to_back_messages_without_newlines() -> None:
    assert JSONSplitter(1 << 20).feed(encode(list(MESSAGES))) == MESSAGES


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    data = encode(list(MESSAGES))
    splitter = JSONSplitter(1 << 20)
    out: list[object] = []
    pos = 0
    for n in cuts * (len(data) // max(1, sum(cuts)) + 1):
        out += splitter.feed(data[pos:pos + n])
        pos += n
    out += splitter.feed(data[pos:])
    assert out == MESSAGES


def test_garbage_is_reported_and_skipped_to_end_of_line() -> None:
    splitter = JSONSplitter(1 << 20)
    out = splitter.feed(b'{not json} more\n{"execute": "a"}\nhello\n[1]')
    assert isinstance(out[0], ProtocolError) and "invalid character 'o'" in str(out[0])
    assert out[1] == {"execute": "a"}
    assert isinstance(out[2], ProtocolError) and "unexpected character 'h'" in str(out[2])
    assert out[3] == [1]


def test_overlong_message_is_refused() -> None:
    out = JSONSplitter(16).feed(b'{"table": "' + b"x" * 32 + b'"}\n{"a": 1}')
    assert isinstance(out[0], ProtocolError) and "longer than 16 bytes" in str(out[0])
    assert out[1:] == [{"a": 1}]
