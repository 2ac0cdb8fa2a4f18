"""Multiplexed framing (io.c send_msg / read_a_msg).

Every frame is a 4-byte little-endian header ``((MPLEX_BASE + tag) << 24) | length``
followed by `length` payload bytes. MSG_DATA frames carry the logical byte stream and
may split any structure anywhere; the other tags are out-of-band messages.

Theory of operation of `Demuxer` (sans-IO): `feed(bytes)` returns the events the new
bytes complete, in order. Data is passed through as soon as it arrives (a data frame's
payload may be delivered in several `Data` pieces), so a large frame never has to be
buffered whole; a message is delivered only when its payload is complete, and a message
longer than rsync's BIGPATHBUFLEN is refused as rsync refuses it. States:

  HEADER  -- collecting the 4 header bytes (`_header` holds 0-3 of them)
  DATA    -- `_remaining` payload bytes of a MSG_DATA frame still to pass through
  MESSAGE -- collecting `_remaining` more bytes of message `_tag` into `_payload`

Once a malformed frame has been seen the demuxer is broken and raises on every feed
(h11's rule: a connection in ERROR never continues).
"""

from __future__ import annotations

from dataclasses import dataclass

from rsyncd_py.protocol.constants import (
    BIGPATHBUFLEN,
    MAX_FRAME_LEN,
    MPLEX_BASE,
    MSG_DATA,
)
from rsyncd_py.protocol.errors import ExitCode, LocalProtocolError, RemoteProtocolError

# The tags a peer may legitimately send on the wire (the rest are sibling-only).
WIRE_TAGS = frozenset({0, 1, 2, 3, 4, 22, 33, 42, 86, 100, 101, 102})


def pack_frame_header(tag: int, length: int) -> bytes:
    """Return the 4-byte header of a frame with `tag` and `length` payload bytes."""
    if not 0 <= length <= MAX_FRAME_LEN:
        raise LocalProtocolError(f"frame length {length} out of range")
    return (((MPLEX_BASE + tag) << 24) | length).to_bytes(4, "little")


def pack_frame(tag: int, payload: bytes) -> bytes:
    """Return one whole frame."""
    return pack_frame_header(tag, len(payload)) + payload


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of the logical data stream (never empty)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A complete out-of-band message."""

    tag: int
    payload: bytes


Event = Data | Message


class Demuxer:
    """Splits a multiplexed byte stream into Data pieces and Messages."""

    __slots__ = ("_broken", "_header", "_payload", "_remaining", "_tag")

    def __init__(self) -> None:
        self._header = bytearray()
        self._tag = MSG_DATA
        self._remaining = 0
        self._payload = bytearray()
        self._broken = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume `data` and return the events it completes."""
        if self._broken:
            raise RemoteProtocolError("multiplexed stream already failed", ExitCode.RERR_STREAMIO)
        view = memoryview(data)
        events: list[Event] = []
        pos = 0
        end = len(view)
        while pos < end:
            if self._remaining == 0:
                need = 4 - len(self._header)
                self._header += view[pos : pos + need]
                pos += min(need, end - pos)
                if len(self._header) == 4:
                    self._start_frame(events)
                continue
            take = min(self._remaining, end - pos)
            chunk = view[pos : pos + take]
            pos += take
            self._remaining -= take
            if self._tag == MSG_DATA:
                events.append(Data(bytes(chunk)))
            else:
                self._payload += chunk
                if self._remaining == 0:
                    self._finish_message(events)
        return events

    def _start_frame(self, events: list[Event]) -> None:
        header = int.from_bytes(self._header, "little")
        self._header.clear()
        tag = (header >> 24) - MPLEX_BASE
        length = header & MAX_FRAME_LEN
        if tag not in WIRE_TAGS:
            self._broken = True
            raise RemoteProtocolError(f"unexpected tag {tag}", ExitCode.RERR_STREAMIO)
        self._tag = tag
        self._remaining = length
        if tag == MSG_DATA:
            return  # an empty data frame is a keep-alive: nothing to deliver
        if length >= BIGPATHBUFLEN:
            self._broken = True
            raise RemoteProtocolError(
                f"multiplexing overflow {tag}:{length}", ExitCode.RERR_STREAMIO
            )
        if length == 0:
            self._finish_message(events)

    def _finish_message(self, events: list[Event]) -> None:
        events.append(Message(self._tag, bytes(self._payload)))
        self._payload.clear()
        self._tag = MSG_DATA
