"""Multiplexed framing: headers, data pass-through, messages, refusal of bad frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsyncd_py.protocol.constants import (
    BIGPATHBUFLEN,
    MSG_DATA,
    MSG_DELETED,
    MSG_ERROR_EXIT,
    MSG_INFO,
    MSG_NOOP,
)
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.mux import Data, Demuxer, Message, pack_frame, pack_frame_header


def collect(demux: Demuxer, data: bytes, chunk: int) -> tuple[bytes, list[Message]]:
    stream, messages = bytearray(), []
    for i in range(0, len(data), chunk):
        for event in demux.feed(data[i : i + chunk]):
            if isinstance(event, Data):
                assert event.data
                stream += event.data
            else:
                messages.append(event)
    return bytes(stream), messages


def test_header_layout():
    # (MPLEX_BASE + tag) << 24 | length, little-endian
    assert pack_frame_header(MSG_DATA, 5).hex() == "05000007"
    assert pack_frame_header(MSG_ERROR_EXIT, 4).hex() == "0400005d"


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300).map(lambda b: (MSG_DATA, b)),
            st.tuples(st.sampled_from([MSG_INFO, MSG_DELETED]), st.binary(max_size=50)),
        ),
        max_size=20,
    ),
    st.sampled_from([1, 3, 7, 4096]),
)
def test_demux_any_split(frames, chunk):
    wire = b"".join(pack_frame(tag, payload) for tag, payload in frames)
    stream, messages = collect(Demuxer(), wire, chunk)
    assert stream == b"".join(p for t, p in frames if t == MSG_DATA)
    assert [(m.tag, m.payload) for m in messages] == [(t, p) for t, p in frames if t != MSG_DATA]


def test_empty_frames_are_keepalives():
    stream, messages = collect(Demuxer(), pack_frame(MSG_DATA, b"") + pack_frame(MSG_NOOP, b""), 1)
    assert stream == b""
    assert [(m.tag, m.payload) for m in messages] == [(MSG_NOOP, b"")]


def test_unknown_tag_breaks_the_stream_for_good():
    demux = Demuxer()
    with pytest.raises(RemoteProtocolError, match="unexpected tag 9") as info:
        demux.feed(pack_frame(9, b"\0\0\0\0"))  # MSG_REDO is sibling-only
    assert info.value.exit_code == 12
    with pytest.raises(RemoteProtocolError):
        demux.feed(pack_frame(MSG_DATA, b"more"))


def test_oversized_message_is_an_overflow():
    with pytest.raises(RemoteProtocolError, match="multiplexing overflow"):
        Demuxer().feed(pack_frame_header(MSG_INFO, BIGPATHBUFLEN))
