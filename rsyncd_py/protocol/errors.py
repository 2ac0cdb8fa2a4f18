"""rsync's exit codes (errcode.h) and the exceptions that end a session with one.

The split follows h11: a `RemoteProtocolError` means the peer sent bytes that make no
sense; a `LocalProtocolError` means this program asked the codec for something
impossible (a bug, or a value too large to encode). Both carry the exit code a real rsync
would exit with, and `str(e)` is the line a real rsync would print (without the
"rsync: " prefix or trailing newline). Decoders raise `RemoteProtocolError` directly,
because every byte they see came from the peer.

`SessionError` is the general "end this session with this rsync message and code"
exception the session and roles raise for non-protocol failures (a destination that
cannot be created, a peer that asked to abort with MSG_ERROR_EXIT, ...).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """errcode.h: the exit status of an rsync process."""

    RERR_OK = 0
    RERR_SYNTAX = 1
    RERR_PROTOCOL = 2
    RERR_FILESELECT = 3
    RERR_UNSUPPORTED = 4
    RERR_STARTCLIENT = 5
    RERR_SOCKETIO = 10
    RERR_FILEIO = 11
    RERR_STREAMIO = 12
    RERR_MESSAGEIO = 13
    RERR_IPC = 14
    RERR_CRASHED = 15
    RERR_TERMINATED = 16
    RERR_SIGNAL1 = 19
    RERR_SIGNAL = 20
    RERR_WAITCHILD = 21
    RERR_MALLOC = 22
    RERR_PARTIAL = 23
    RERR_VANISHED = 24
    RERR_DEL_LIMIT = 25
    RERR_TIMEOUT = 30
    RERR_CONTIMEOUT = 35


# log.c rerr_names: the text of "rsync error: <text> (code N) at ..."
_EXIT_TEXT: dict[int, str] = {
    ExitCode.RERR_SYNTAX: "syntax or usage error",
    ExitCode.RERR_PROTOCOL: "protocol incompatibility",
    ExitCode.RERR_FILESELECT: "errors selecting input/output files, dirs",
    ExitCode.RERR_UNSUPPORTED: "requested action not supported",
    ExitCode.RERR_STARTCLIENT: "error starting client-server protocol",
    ExitCode.RERR_SOCKETIO: "error in socket IO",
    ExitCode.RERR_FILEIO: "error in file IO",
    ExitCode.RERR_STREAMIO: "error in rsync protocol data stream",
    ExitCode.RERR_MESSAGEIO: "errors with program diagnostics",
    ExitCode.RERR_IPC: "error in IPC code",
    ExitCode.RERR_CRASHED: "sibling process crashed",
    ExitCode.RERR_TERMINATED: "sibling process terminated abnormally",
    ExitCode.RERR_SIGNAL1: "received SIGUSR1",
    ExitCode.RERR_SIGNAL: "received SIGINT, SIGTERM, or SIGHUP",
    ExitCode.RERR_WAITCHILD: "waitpid() failed",
    ExitCode.RERR_MALLOC: "error allocating core memory buffers",
    ExitCode.RERR_PARTIAL: "some files/attrs were not transferred (see previous errors)",
    ExitCode.RERR_VANISHED: "some files vanished before they could be transferred",
    ExitCode.RERR_DEL_LIMIT: "the --max-delete limit stopped deletions",
    ExitCode.RERR_TIMEOUT: "timeout in data send/receive",
    ExitCode.RERR_CONTIMEOUT: "timeout waiting for daemon connection",
}


def exit_text(code: int) -> str:
    """Return rsync's description of exit `code` ("unexplained error" if unknown)."""
    return _EXIT_TEXT.get(code, "unexplained error")


def exit_line(code: int, role: str) -> str:
    """Return the line log.c:log_exit prints for a non-zero exit, with its newline.

    rsync names the C file and line that exited; we name the role instead, which is
    the part a user can act on.
    """
    kind = "warning" if code == ExitCode.RERR_VANISHED else "error"
    return f"rsync {kind}: {exit_text(code)} (code {code}) at {role} [{role}=rsyncd-py]\n"


class SessionError(Exception):
    """End the session: `str(self)` is rsync's message, `exit_code` its exit status.

    `message` may be empty when the text was already reported (e.g. the peer's own
    MSG_ERROR_EXIT, after which rsync prints nothing more).
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = int(exit_code)


class ProtocolError(SessionError):
    """The byte stream cannot continue; the default code is RERR_PROTOCOL."""

    def __init__(self, message: str, exit_code: int = ExitCode.RERR_PROTOCOL) -> None:
        super().__init__(message, exit_code)


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid (raised by every decoder)."""


class LocalProtocolError(ProtocolError):
    """Our side asked the codec to encode something the protocol cannot carry."""


class ConnectionClosed(SessionError):
    """The peer closed the stream while more protocol data was expected.

    io.c whine_about_eof's line; `who` is log.c who_am_i ("Receiver" or "sender").
    """

    def __init__(self, received: int, who: str = "Receiver") -> None:
        super().__init__(
            f"rsync: connection unexpectedly closed ({received:,} bytes received so far) "
            f"[{who}]",
            ExitCode.RERR_STREAMIO,
        )
