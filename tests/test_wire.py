"""The Wire over in-memory streams: trickled and stalled input, bounded buffering,
message handling, and rsync's output order."""

from __future__ import annotations

import asyncio

import pytest

from rsyncd_py.protocol.constants import (
    MSG_DATA,
    MSG_DELETED,
    MSG_ERROR_EXIT,
    MSG_INFO,
    MSG_IO_ERROR,
    MSG_NOOP,
)
from rsyncd_py.protocol.errors import ConnectionClosed, RemoteProtocolError, SessionError
from rsyncd_py.protocol.ints import Cursor, pack_int, pack_varint, read_item
from rsyncd_py.protocol.mux import pack_frame
from rsyncd_py.wire import HIGH_WATER, READ_SIZE, Log, PeerExit, Wire
from tests.helpers.goldens import demux
from tests.helpers.streams import memory_stream_pair


def read_varint(buf):
    return read_item(buf, Cursor.varint)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_trickled_multiplexed_input_is_reassembled():
    async def main():
        ours, peer = memory_stream_pair(max_chunk=1)
        wire = Wire(ours)
        values = list(range(0, 1 << 20, 997))
        payload = b"".join(pack_varint(v) for v in values)
        peer.write(b"\x01\x02")  # raw bytes before multiplexing starts
        for i in range(0, len(payload), 7):  # frames split items anywhere
            peer.write(pack_frame(MSG_DATA, payload[i : i + 7]) + pack_frame(MSG_NOOP, b""))
        assert await wire.read(lambda buf: buf.take(2)) == b"\x01\x02"
        wire.start_multiplex_in()
        got = [await wire.read(read_varint) for _ in values]
        assert got == values
        await wire.close()

    run(main())


def test_switch_to_multiplexing_is_exact_to_the_byte():
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        # all in one chunk: a raw int, then frames -- the reader task sees them together
        peer.write(pack_int(32) + pack_frame(MSG_DATA, pack_int(7)))
        assert await wire.read(lambda buf: read_item(buf, Cursor.int32)) == 32
        wire.start_multiplex_in()
        assert await wire.read(lambda buf: read_item(buf, Cursor.int32)) == 7

    run(main())


def test_reads_do_not_wait_for_a_stalled_writer():
    async def main():
        ours, peer = memory_stream_pair(high_water=1024)
        wire = Wire(ours)
        wire.start_multiplex_out()
        peer.incoming.stall()  # nobody reads what we write
        wire.write(b"x" * 100_000)
        writer = asyncio.create_task(wire.drain())  # blocks: the pipe is full
        peer.write(pack_int(5))
        assert await wire.read(lambda buf: read_item(buf, Cursor.int32)) == 5
        assert not writer.done()
        peer.incoming.resume()
        await asyncio.sleep(0)
        while peer.incoming.buffer:  # the peer drains what we sent
            await peer.read(1 << 20)
        await writer

    run(main())


def test_input_buffering_is_bounded():
    async def main():
        ours, peer = memory_stream_pair(high_water=1 << 30)
        wire = Wire(ours)
        wire.start()
        peer.write(b"\0" * (3 * HIGH_WATER))
        for _ in range(200):
            await asyncio.sleep(0)
        assert wire.buffered <= HIGH_WATER + READ_SIZE
        assert len(peer.outgoing.buffer) >= 3 * HIGH_WATER - wire.buffered - READ_SIZE
        assert await wire.read(lambda buf: buf.take(3 * HIGH_WATER)) == b"\0" * (3 * HIGH_WATER)

    run(main())


def test_eof_mid_item_is_a_closed_connection():
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        peer.write(b"\x20\x00\x00\x00")  # the handshake: read, not counted (as rsync)
        assert await wire.read(lambda buf: read_item(buf, Cursor.int32)) == 32
        wire.start_counting_input()
        peer.write(b"\x01\x02\x03")
        await peer.close()
        with pytest.raises(ConnectionClosed, match=r"\(3 bytes received so far\)") as info:
            await wire.read(lambda buf: read_item(buf, Cursor.int32))
        assert info.value.exit_code == 12

    run(main())


def test_messages_from_the_peer():
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        wire.protocol = 31
        wire.start_multiplex_in()
        wire.start_multiplex_out()
        peer.write(pack_frame(MSG_IO_ERROR, pack_int(1)) + pack_frame(MSG_INFO, b"hello\n"))
        peer.write(pack_frame(MSG_ERROR_EXIT, pack_int(23)))
        with pytest.raises(PeerExit) as info:
            await wire.read(lambda buf: buf.take(1))
        assert info.value.exit_code == 23
        assert wire.io_error == 1
        # a generator/receiver acknowledges with the code (io.c read_a_msg, protocol 31+)
        assert demux(bytes(peer.incoming.buffer))[1] == [(MSG_ERROR_EXIT, pack_int(23))]

    run(main())


def test_bad_frames_fail_every_later_read():
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        wire.start_multiplex_in()
        peer.write(pack_frame(MSG_DELETED, b"x"))  # only a server may send this
        for _ in range(2):
            with pytest.raises(RemoteProtocolError, match="invalid multi-message 101"):
                await wire.read(lambda buf: buf.take(1))

    run(main())


def test_messages_go_ahead_of_unflushed_data():
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        wire.start_multiplex_out()
        wire.write(b"item-record")
        wire.send_msg(MSG_DELETED, b"old")
        assert demux(bytes(peer.incoming.buffer)) == (b"", [(MSG_DELETED, b"old")])
        await wire.flush()
        assert demux(bytes(peer.incoming.buffer)) == (b"item-record", [(MSG_DELETED, b"old")])

    run(main())


def test_full_frames_are_sent_without_a_flush():
    async def main():
        ours, peer = memory_stream_pair(high_water=1 << 30)
        wire = Wire(ours)
        wire.start_multiplex_out()
        wire.write(b"a" * 100_000)
        data, _ = demux(bytes(peer.incoming.buffer))
        assert len(data) == 98_304  # three whole 32 KiB frames; the tail waits
        await wire.flush()
        assert demux(bytes(peer.incoming.buffer))[0] == b"a" * 100_000

    run(main())


def test_frames_of_one_write_reach_the_stream_in_one_write():
    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.writes.append(bytes(data))

        async def drain(self) -> None:
            pass

    async def main():
        stream = Recorder()
        wire = Wire(stream)  # type: ignore[arg-type]
        wire.start_multiplex_out()
        payload = bytes(range(256)) * 4096  # 1 MiB: 32 whole frames, nothing left over
        wire.write(b"x" * 10)
        wire.write(payload)  # joins the buffered 10 bytes: 32 frames out, 10 bytes wait
        wire.write(payload[:40_000])  # 40,010 buffered: one more frame out
        # an SSH channel cuts each write into its own packets: one write per call, so a
        # frame's 4-byte header never becomes a packet of its own
        assert len(stream.writes) == 2
        assert [len(write) for write in stream.writes] == [32 * (4 + 32768), 4 + 32768]
        data, messages = demux(b"".join(stream.writes))
        assert messages == [] and data == (b"x" * 10 + payload + payload[:40_000])[: 33 * 32768]
        await wire.flush()  # the 7,242 bytes left
        wire.write(payload)  # nothing buffered: framed where it lies
        assert [len(write) for write in stream.writes[2:]] == [4 + 7242, 32 * (4 + 32768)]
        data, _ = demux(b"".join(stream.writes))
        assert data == b"x" * 10 + payload + payload[:40_000] + payload

    run(main())


@pytest.mark.parametrize(
    ("msgs2stderr", "protocol", "error_on_stderr"),
    [(2, 31, True), (0, 31, False), (1, 31, True), (0, 29, False)],
)
def test_report_routing(msgs2stderr, protocol, error_on_stderr):
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        wire.start_multiplex_out()
        wire.protocol = protocol
        wire.msgs2stderr = msgs2stderr
        wire.rprintf(Log.ERROR_XFER, "rsync: boom\n")
        wire.rprintf(Log.INFO, "note\n")
        messages = demux(bytes(peer.incoming.buffer))[1]
        assert (b"rsync: boom\n" in ours.stderr) == error_on_stderr
        if not error_on_stderr:
            assert (1, b"rsync: boom\n") in messages  # MSG_ERROR_XFER at any protocol
        assert ((MSG_INFO, b"note\n") in messages) == (msgs2stderr != 1)
        assert wire.got_xfer_error

    run(main())


def test_timeout_without_input_ends_the_session():
    async def main():
        ours, peer = memory_stream_pair()
        wire = Wire(ours)
        wire.start_multiplex_out()
        wire.set_timeout(0.3)
        with pytest.raises(SessionError, match="io timeout") as info:
            await wire.read(lambda buf: buf.take(1))
        assert info.value.exit_code == 30
        # while we waited, empty data frames told the peer we were alive
        assert bytes(peer.incoming.buffer).count(pack_frame(MSG_DATA, b"")) >= 1
        await wire.close()

    run(main())
