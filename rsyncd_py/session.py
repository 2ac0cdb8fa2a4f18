"""One rsync server session over any byte stream (rsync's main.c start_server).

`run_server` is the entry point every transport calls.

Theory of operation
-------------------
1. Parse the argv as rsync's option parser does. Bad or unsupported options are
   refused exactly as rsync refuses an unknown one: a line on stderr and exit 1,
   before a single protocol byte. With -s the rest of the argv arrives in-band first.
2. The setup exchange (`protocol/handshake.py`): versions, compat flags, checksum and
   compression names, the checksum seed. Then our output is multiplexed, and from
   protocol 30 on the client's is too.
3. Open the provider's FileSystem (writable unless we are the sender) and run the role:
   `roles/server_recv.py` for a push; a pull (`--sender`) goes to `roles/sender.py`.
4. Close the FileSystem -- committing only if the role ran to its end -- and return
   rsync's exit code.

Failures never escape as exceptions: each becomes rsync's message (stderr, or MSG_*
once multiplexing is on and the client asked for it) plus errcode.h's exit code. At
protocol 31+ a fatal error is also announced with MSG_ERROR_EXIT, after which we drain
the input until the client hangs up, as rsync's noop_io_until_death does.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import time
from collections.abc import Sequence

from rsyncd_py.fs.base import FileSystem, FsError, FsProvider
from rsyncd_py.protocol import checksums, handshake, tokens
from rsyncd_py.protocol.constants import MSG_ERROR_EXIT, PROTOCOL_VERSION
from rsyncd_py.protocol.errors import ExitCode, SessionError, exit_line
from rsyncd_py.protocol.handshake import Negotiated
from rsyncd_py.protocol.ints import pack_int, read_item
from rsyncd_py.protocol.options import (
    NOT_YET_SUPPORTED,
    OptionError,
    ServerOptions,
    parse_server_args,
    read_secluded_args,
)
from rsyncd_py.roles import acl_xattr, files_from
from rsyncd_py.transports.stream import ByteStream
from rsyncd_py.wire import Log, PeerExit, Wire

# Options this server refuses for now (rsync's "refuse options" text, exit 1).
REFUSED_OPTIONS: tuple[str, ...] = (
    *NOT_YET_SUPPORTED,
    "atimes",
)

# How long to keep reading after a fatal error while the client winds down.
_DRAIN_TIMEOUT = 30.0

_QUIET_CODES = frozenset(
    {ExitCode.RERR_SOCKETIO, ExitCode.RERR_STREAMIO, ExitCode.RERR_SIGNAL1, ExitCode.RERR_TIMEOUT}
)


async def run_server(
    stream: ByteStream,
    argv: Sequence[str],
    provider: FsProvider,
    *,
    log: logging.LoggerAdapter | None = None,
) -> int:
    """Serve one rsync client on `stream`; `argv` starts at "--server". Returns the exit code."""
    logger: logging.Logger | logging.LoggerAdapter = log or logging.getLogger("rsyncd_py.session")
    wire = Wire(stream, log=logger)
    session = _Session(wire, list(argv), provider, logger)
    try:
        return await session.run()
    finally:
        await wire.close()


class _Session:
    def __init__(
        self,
        wire: Wire,
        argv: list[str],
        provider: FsProvider,
        log: logging.Logger | logging.LoggerAdapter,
    ) -> None:
        self.wire = wire
        self.argv = argv
        self.provider = provider
        self.log = log
        self.role = "server"

    async def run(self) -> int:
        try:
            opts = await self._parse_options()
            if isinstance(opts, int):
                return opts
            neg = await self._setup_protocol(opts)
            return await self._run_role(opts, neg)
        except PeerExit as exc:
            return exc.exit_code  # the client already reported it; rsync prints nothing
        except SessionError as exc:
            return await self._fail(exc)
        except FsError as exc:
            return await self._fail(
                SessionError(
                    f"rsync: [{self.role}] {exc.strerror or exc}: "
                    f"{exc.path.decode('utf-8', 'surrogateescape')} ({exc.errno})",
                    ExitCode.RERR_FILEIO,
                )
            )
        except Exception as exc:  # a bug: never let a traceback reach the client
            self.log.exception("internal error in rsync session")
            return await self._fail(
                SessionError(
                    f"rsync: [{self.role}] internal error: {type(exc).__name__}: {exc}",
                    ExitCode.RERR_CRASHED,
                )
            )

    # --- 1. options --------------------------------------------------------------

    async def _parse_options(self) -> ServerOptions | int:
        """options.c parse_arguments, plus -s; an int is an exit code (already reported)."""
        try:
            opts = parse_server_args(self.argv)
            if opts.needs_secluded_args:
                secluded = await self.wire.read(read_secluded_args)
                opts = parse_server_args(self.argv, secluded=secluded)
        except OptionError as exc:
            return self._refuse(exc.stderr_line, exc.exit_code)
        if opts.daemon:
            return self._refuse(
                "rsync: daemon mode over a remote shell is not supported by this server\n",
                ExitCode.RERR_UNSUPPORTED,
            )
        reason = opts.unsupported_reason(REFUSED_OPTIONS)
        if reason:
            return self._refuse(f"rsync: {reason}\n", ExitCode.RERR_SYNTAX)
        if opts.am_sender and not _sender_available():
            return self._refuse(
                "rsync: --sender: pulling from this server is not supported yet\n",
                ExitCode.RERR_UNSUPPORTED,
            )
        if opts.files_from not in (None, "-"):  # options.c opens a server-side list now
            try:
                opts.files_from_list = await files_from.read_server_list(self.provider, opts)
            except OptionError as exc:
                return self._refuse(exc.stderr_line, exc.exit_code)
        self.role = "sender" if opts.am_sender else "generator"
        self.wire.who_am_i = "sender" if opts.am_sender else "Receiver"
        return opts

    def _refuse(self, line: str, code: int) -> int:
        """Report an option problem on stderr before any protocol byte, as rsync does."""
        self.wire.rprintf(Log.ERROR, line)
        self.wire.rprintf(Log.ERROR, exit_line(code, "server"))
        return code

    # --- 2. setup exchange (compat.c setup_protocol) -------------------------------

    async def _setup_protocol(self, opts: ServerOptions) -> Negotiated:
        wire = self.wire
        ours = opts.protocol_version or PROTOCOL_VERSION
        wire.write(handshake.pack_version(min(ours, PROTOCOL_VERSION)))
        remote = await wire.read(lambda buf: read_item(buf, handshake.read_version))
        protocol = handshake.agree_version(remote, forced=opts.protocol_version)
        acl_xattr.check_protocol(opts, protocol)
        if protocol < 29 and opts.fuzzy_basis:  # compat.c: the basis type needs item records
            raise SessionError(
                f"--fuzzy requires protocol 29 or higher (negotiated {protocol}).",
                ExitCode.RERR_PROTOCOL,
            )
        wire.protocol = protocol
        wire.msgs2stderr = opts.msgs2stderr
        if protocol <= 28 and not opts.saw_stderr_opt:
            wire.msgs2stderr = 0  # the client may not show our stderr (compat.c)
        client_info = opts.client_info
        compat_flags = 0
        if protocol >= 30:
            compat_flags = handshake.compat_flags_for(
                client_info,
                symlink_times=True,
                inc_recurse=opts.server_allows_inc_recurse(),
            )
            wire.write(handshake.pack_compat_flags(compat_flags, client_info))
        negotiating = protocol >= 30 and bool(compat_flags & 0x80)

        checksum, file_checksum = self._forced_checksums(opts, protocol)
        compressing = bool(opts.do_compression)
        forced_compression = opts.compress_choice
        ours_compress = _supported_compressions()
        if negotiating:
            if checksum is None:
                wire.write(handshake.pack_name_list([*checksums.CHECKSUM_NAMES, "none"]))
            if compressing and forced_compression is None:
                wire.write(handshake.pack_name_list([*ours_compress, "none"]))
            if checksum is None:
                peer = await wire.read(lambda buf: read_item(buf, handshake.read_name_list))
                checksum = handshake.choose_name(peer, [*checksums.CHECKSUM_NAMES, "none"])
                if checksum is None:
                    raise handshake.negotiation_failed("checksum")
                file_checksum = checksum
            if compressing and forced_compression is None:
                peer = await wire.read(lambda buf: read_item(buf, handshake.read_name_list))
                forced_compression = handshake.choose_name(peer, [*ours_compress, "none"])
                if forced_compression is None:
                    raise handshake.negotiation_failed("compress")
        checksum = checksum or handshake.default_checksum(protocol)
        file_checksum = file_checksum or checksum
        compression = "none"
        if compressing:
            compression = forced_compression or "zlib"
            if compression != "none" and compression not in ours_compress:
                raise SessionError(
                    f"rsync: compression {compression} is not supported by this server",
                    ExitCode.RERR_UNSUPPORTED,
                )
            # token.c init_compression_level: --compress-level=0 turns zlib off only
            compression, _ = tokens.compression_level(compression, opts.do_compression_level)
        seed = opts.checksum_seed or handshake.make_seed(int(time.time()), os.getpid())
        wire.write(pack_int(seed))
        wire.start_multiplex_out()
        wire.start_counting_input()
        if protocol >= 31 or (protocol == 30 and not _forwards_files_from(opts)):
            wire.start_multiplex_in()
        if opts.io_timeout:
            wire.set_timeout(opts.io_timeout)
        return Negotiated(
            protocol=protocol,
            compat_flags=compat_flags,
            checksum=checksum,
            file_checksum=file_checksum,
            compression=compression,
            seed=seed,
        )

    @staticmethod
    def _forced_checksums(opts: ServerOptions, protocol: int) -> tuple[str | None, str | None]:
        """--checksum-choice=X[,Y]: (transfer, file) checksums, or (None, None) to negotiate.

        Any choice -- "auto" too -- means neither side sends a name list.
        """
        if opts.checksum_choice is None:
            return None, None
        default = handshake.default_checksum(protocol)
        xfer = opts.xfer_checksum_choice or default
        file = opts.file_checksum_choice or default
        for name in (xfer, file):
            if name not in (*checksums.CHECKSUM_NAMES, "none"):
                raise SessionError(f"unknown checksum name: {name}", ExitCode.RERR_UNSUPPORTED)
        return xfer, file

    # --- 3. the role -----------------------------------------------------------------

    async def _run_role(self, opts: ServerOptions, neg: Negotiated) -> int:
        # a pull writes only to remove what it sent (--remove-source-files)
        writable = not opts.am_sender or bool(opts.remove_source_files)
        fs: FileSystem = await self.provider.open_session(writable=writable)
        success = False
        try:
            if opts.am_sender:
                sender = importlib.import_module(SENDER_MODULE)
                code = await sender.send_files(self.wire, fs, opts, neg)
            else:
                from rsyncd_py.roles.server_recv import do_server_recv

                code = await do_server_recv(
                    self.wire,
                    fs,
                    opts,
                    neg,
                    umask=_process_umask(),
                    owner=(os.geteuid(), os.getegid()),
                )
            success = True
        finally:
            await fs.close(success)
        # a run that ended (with 23, 24 or 25 from its io_error bits) says nothing more:
        # rsync's server prints its "rsync error:" line only for a fatal exit (log_exit
        # skips it when am_server == 2), the client prints its own
        await self.wire.flush()
        return code

    # --- 4. failure ------------------------------------------------------------------

    async def _fail(self, exc: SessionError) -> int:
        """cleanup.c _exit_cleanup for a fatal error: report, tell the peer, drain."""
        code = exc.exit_code or int(ExitCode.RERR_PROTOCOL)
        wire = self.wire
        message = str(exc)
        if message:
            wire.rprintf(Log.ERROR, message if message.endswith("\n") else message + "\n")
        wire.rprintf(Log.ERROR, exit_line(code, self.role))
        if code not in _QUIET_CODES and wire.multiplexing_out:
            if wire.protocol >= 31:
                wire.send_msg(MSG_ERROR_EXIT, pack_int(code))
            try:
                await wire.flush()
            except Exception:  # the peer may be gone already
                return code
            if wire.protocol >= 31:
                await wire.drain_until_eof(_DRAIN_TIMEOUT)
        return code


def _forwards_files_from(opts: ServerOptions) -> bool:
    """A pulling client sends its --files-from list unframed (the sender switches later)."""
    return bool(opts.am_sender) and opts.files_from == "-"


def _supported_compressions() -> list[str]:
    """The compressors tokens.py can decode, in rsync's preference order."""
    names = []
    for name in handshake.COMPRESSION_PREFERENCE:
        try:
            tokens.new_token_decoder(name)
        except (ValueError, NotImplementedError, KeyError):
            continue
        names.append(name)
    return names


SENDER_MODULE = "rsyncd_py.roles.sender"  # provides send_files(wire, fs, opts, neg) -> int


def _sender_available() -> bool:
    return importlib.util.find_spec(SENDER_MODULE) is not None


def _process_umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
