"""ChannelStream's contract, driven through a recording stand-in for asyncssh's channel.

The stand-in models the parts of `SSHServerChannel` the stream relies on: the write
buffer with its water marks (calling the session's pause/resume_writing like asyncssh
does), pause/resume of delivery (re-delivering held packets on resume), EOF and stderr.
End-to-end behaviour through real ssh is in test_transport.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from rsyncd_py.transports.ssh_stream import ChannelStream


class FakeChannel:
    def __init__(self) -> None:
        self.stream: ChannelStream | None = None
        self.sent = bytearray()
        self.stderr = bytearray()
        self.buffered = 0  # bytes "waiting for window"
        self.high = 65536
        self.low = 16384
        self.paused_writing = False
        self.reading_paused = False
        self.held: list[bytes] = []
        self.eof_sent = False
        self.closing = False

    # what ChannelStream calls
    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.high, self.low = high, low
        self._water()

    def write(self, data: bytes) -> None:
        if self.eof_sent or self.closing:
            raise BrokenPipeError("Channel not open for sending")
        self.sent += data
        self.buffered += len(data)
        self._water()

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data

    def write_eof(self) -> None:
        self.eof_sent = True

    def is_closing(self) -> bool:
        return self.closing or self.eof_sent

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False
        while self.held and not self.reading_paused:
            assert self.stream is not None
            self.stream.feed_data(self.held.pop(0))

    # what the test (playing the network) calls
    def deliver(self, data: bytes) -> None:
        assert self.stream is not None
        if self.reading_paused:
            self.held.append(data)
        else:
            self.stream.feed_data(data)

    def window_opened(self, n: int) -> None:
        self.buffered = max(0, self.buffered - n)
        self._water()

    def _water(self) -> None:
        assert self.stream is not None or not self.buffered
        if self.stream is None:
            return
        if self.paused_writing and self.buffered <= self.low:
            self.paused_writing = False
            self.stream.resume_writing()
        elif not self.paused_writing and self.buffered > self.high:
            self.paused_writing = True
            self.stream.pause_writing()


def run_async(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def wrapper() -> None:
        asyncio.run(test())

    return wrapper


def make_stream(**kwargs: int) -> tuple[ChannelStream, FakeChannel]:
    channel = FakeChannel()
    stream = ChannelStream(channel, **kwargs)  # type: ignore[arg-type]
    channel.stream = stream
    return stream, channel


@run_async
async def test_reads_whole_packets_without_copying_and_splits_on_request() -> None:
    stream, channel = make_stream()
    packet = os.urandom(32768)
    channel.deliver(packet)
    assert await stream.read(1 << 20) is packet
    channel.deliver(b"abcdefgh")
    assert await stream.read(3) == b"abc"
    assert await stream.read(3) == b"def"
    assert await stream.read(100) == b"gh"
    assert stream.bytes_in == 32768 + 8


@run_async
async def test_small_reads_reassemble_the_input_exactly() -> None:
    stream, channel = make_stream()
    data = os.urandom(100_000)
    for i in range(0, len(data), 7919):
        channel.deliver(data[i : i + 7919])
    channel.stream.feed_eof()  # type: ignore[union-attr]
    out = bytearray()
    while chunk := await stream.read(1000):
        assert 1 <= len(chunk) <= 1000
        out += chunk
    assert out == data
    assert await stream.read(10) == b""


@run_async
async def test_read_waits_for_data_then_eof() -> None:
    stream, channel = make_stream()
    pending = asyncio.ensure_future(stream.read(10))
    await asyncio.sleep(0)
    assert not pending.done()
    channel.deliver(b"x")
    assert await pending == b"x"
    pending = asyncio.ensure_future(stream.read(10))
    await asyncio.sleep(0)
    stream.feed_eof()
    assert await pending == b""


@run_async
async def test_receive_backlog_pauses_and_resumes_the_channel() -> None:
    stream, channel = make_stream(recv_high=100_000, recv_low=40_000)
    for _ in range(4):
        channel.deliver(bytes(32768))  # 131072 > high: paused after the 4th
    assert channel.reading_paused
    channel.deliver(bytes(32768))
    assert channel.held  # held back by the channel, not queued in the stream
    total = 0
    while channel.reading_paused or channel.held or total < 5 * 32768:
        total += len(await stream.read(32768))
        if total >= 5 * 32768:
            break
    assert total == 5 * 32768
    assert not channel.reading_paused


@run_async
async def test_drain_waits_for_the_window_and_close_flushes_before_returning() -> None:
    stream, channel = make_stream(send_high=65536)
    stream.write(bytes(100_000))
    assert channel.paused_writing
    drained = asyncio.ensure_future(stream.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    channel.window_opened(90_000)  # 10_000 left: below the low-water mark
    await drained
    closed = asyncio.ensure_future(stream.close())
    await asyncio.sleep(0)
    assert channel.eof_sent
    assert not closed.done()  # 10_000 bytes still queued: close waits
    channel.window_opened(10_000)
    await closed
    with pytest.raises(BrokenPipeError):
        stream.write(b"late")
    assert stream.bytes_out == 100_000


@run_async
async def test_loss_ends_reads_and_fails_writes() -> None:
    stream, channel = make_stream(send_high=10)
    channel.deliver(b"tail")
    stream.write(b"0123456789abc")
    drained = asyncio.ensure_future(stream.drain())
    await asyncio.sleep(0)
    stream.connection_lost(ConnectionResetError("peer reset"))
    with pytest.raises(BrokenPipeError):
        await drained
    assert await stream.read(100) == b"tail"  # what arrived before the loss is kept
    assert await stream.read(100) == b""
    with pytest.raises(BrokenPipeError):
        stream.write(b"x")
    with pytest.raises(BrokenPipeError):
        await stream.drain()
    stream.write_stderr(b"dropped quietly")
    await stream.close()  # nothing to flush, no error
    assert channel.stderr == b""


@run_async
async def test_stderr_goes_out_of_band() -> None:
    stream, channel = make_stream()
    stream.write_stderr(b"rsync: something\n")
    assert channel.stderr == b"rsync: something\n"
    assert channel.sent == b""
    assert stream.bytes_out == 0
