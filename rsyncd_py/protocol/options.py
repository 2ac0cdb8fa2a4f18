"""The server's argv: rsync's option parser (`options.c:parse_arguments`) as a pure function.

A client starts us as ``rsync --server [--sender] <options> . <paths>`` (or with ``-s``,
``--server -s…`` plus a NUL-separated list sent in-band). `parse_server_args` turns that
argv into a `ServerOptions` holding every rsync setting under rsync's own variable name,
with rsync's defaults, or raises `OptionError` with the text and exit code a real rsync
server would give.

Theory of operation: the popt scanner (`popt.py`) walks the argv against the table in
`option_table.py` and hands each matched row to `OptionParser.apply` (`option_parser.py`),
which performs the row's action (a constant, a stored argument, or one `parse_arguments`
switch case). After the scan the parser runs the checks and derivations `parse_arguments`
makes after its loop, in the same order, so the first error reported is rsync's. The
protocol-dependent decisions (which `--delete` timing plain ``--delete`` means, whether
incremental recursion is used, the checksum and compressor negotiation) are left to the
session, which knows the protocol; `ServerOptions.delete_timing(protocol)` helps.

Secluded args (``-s``): rsync parses the command line, stops before validating, reads
the in-band list (`read_secluded_args`), and parses that list on top. Call
`parse_server_args(argv)`, see `needs_secluded_args`, read the list, then call
`parse_server_args(argv, secluded=the_list)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .buffer import ReceiveBuffer
from .option_parser import INT_MIN, DaemonMode, OptionError, OptionParser, scan_daemon_args
from .popt import PoptOption

__all__ = [
    "NOT_YET_SUPPORTED",
    "OptionError",
    "ServerOptions",
    "parse_server_args",
    "read_secluded_args",
]

MAX_SECLUDED_BYTES: Final = 1 << 20

# Long names of options this server refuses for now, as rsync's "refuse options" would
# ("The server does not support --acls (-A)"). The session passes its own list to
# `ServerOptions.unsupported_reason` as features land; this is the default.
NOT_YET_SUPPORTED: Final[tuple[str, ...]] = (
    "crtimes",
    "iconv",
    "only-write-batch",
    "write-batch",
    "read-batch",
    "copy-as",
    "confine-root",
)


@dataclass(slots=True)
class ServerOptions:
    """Every rsync setting a server argv can carry; names and defaults are rsync's.

    Integers mirror rsync's tri-state ints where rsync has them (-1 "not given").
    Derived values (`do_xfers`, `need_messages_from_generator`, `stdout_format_has_i`,
    …) are filled in by `parse_server_args` as `parse_arguments` fills them in.
    """

    # roles and mode
    am_server: int = 0
    am_sender: int = 0
    daemon: bool = False
    needs_secluded_args: bool = False
    args: list[str] = field(default_factory=list)
    # informational lines rsync prints while parsing (FINFO), for the session to log
    notices: list[str] = field(default_factory=list)
    # output
    verbose: int = 0
    quiet: int = 0
    msgs2stderr: int = 2
    saw_stderr_opt: int = 0
    output_motd: int = 1
    do_stats: int = 0
    human_readable: int = 1
    info: list[str] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)
    itemize_changes: int = 0
    stdout_format: str | None = None
    stdout_format_has_i: int = 0
    stdout_format_has_o_or_i: int = 0
    logfile_name: str | None = None
    logfile_format: str | None = None
    do_progress: int = 0
    version_opt_cnt: int = 0
    help_requested: bool = False
    # which files
    dry_run: int = 0
    do_xfers: int = 1
    list_only: int = 0
    recurse: int = 0
    allow_inc_recurse: int = 1
    xfer_dirs: int = -1
    relative_paths: int = -1
    implied_dirs: int = 1
    files_from: str | None = None
    files_from_list: bytes | None = None  # a server-side list, read by the session
    eol_nulls: int = 0
    missing_args: int = 0
    ignore_times: int = 0
    size_only: int = 0
    update_only: int = 0
    ignore_non_existing: int = 0
    ignore_existing: int = 0
    max_size: int = -1
    min_size: int = -1
    one_file_system: int = 0
    always_checksum: int = 0
    cvs_exclude: int = 0
    filter_args: list[tuple[str, str]] = field(default_factory=list)
    # metadata
    preserve_perms: int = 0
    preserve_executability: int = 0
    preserve_acls: int = 0
    preserve_xattrs: int = 0
    preserve_mtimes: int = 0
    preserve_atimes: int = 0
    open_noatime: int = 0
    preserve_crtimes: int = 0
    omit_dir_times: int = 0
    omit_link_times: int = 0
    modify_window: int = 0
    modify_window_set: int = 0
    am_root: int = 0
    preserve_uid: int = 0
    preserve_gid: int = 0
    numeric_ids: int = 0
    usermap: str | None = None
    groupmap: str | None = None
    chmod: list[str] = field(default_factory=list)
    preserve_devices: int = 0
    preserve_specials: int = 0
    copy_devices: int = 0
    write_devices: int = 0
    drop_devices: int = 0
    preserve_links: int = 0
    copy_links: int = 0
    copy_unsafe_links: int = 0
    safe_symlinks: int = 0
    insecure_links: int = 0
    munge_symlinks: int = 0
    copy_dirlinks: int = 0
    keep_dirlinks: int = 0
    preserve_hard_links: int = 0
    confine_root: str | None = None
    # deletion
    delete_mode: int = 0
    delete_before: int = 0
    delete_during: int = 0
    delete_after: int = 0
    delete_excluded: int = 0
    force_delete: int = 0
    ignore_errors: int = 0
    max_delete: int = INT_MIN
    remove_source_files: int = 0
    # how to transfer
    whole_file: int = -1
    block_size: int = 0
    checksum_choice: str | None = None
    checksum_seed: int = 0
    do_compression: int = 0
    compress_choice: str | None = None
    do_compression_level: int | None = None
    do_compression_threads: int = 0
    skip_compress: str | None = None
    sparse_files: int = 0
    preallocate_files: int = 0
    inplace: int = 0
    append_mode: int = 0
    keep_partial: int = 0
    partial_dir: str | None = None
    delay_updates: int = 0
    prune_empty_dirs: int = 0
    fuzzy_basis: int = 0
    basis_dirs: list[str] = field(default_factory=list)
    alt_dest_type: str | None = None
    tmpdir: str | None = None
    do_fsync: int = 0
    bwlimit: int = 0
    max_alloc_arg: str | None = None
    max_alloc: int | None = None
    make_backups: int = 0
    backup_dir: str | None = None
    backup_suffix: str | None = None
    batch_name: str | None = None
    read_batch: int = 0
    write_batch: int = 0
    need_messages_from_generator: int = 0
    # session and connection
    protocol_version: int | None = None
    shell_cmd: str | None = None
    protect_args: int = -1
    old_style_args: int = -1
    trust_sender: int = 0
    io_timeout: int = 0
    connect_timeout: int = 0
    stop_after_minutes: int | None = None
    stop_at: str | None = None
    rsync_path: str | None = None
    iconv_opt: str | None = None
    default_af_hint: int = 0
    allow_8bit_chars: int = 0
    mkpath_dest_arg: int = 0
    use_qsort: int = 0
    copy_as: str | None = None
    bind_address: str | None = None
    rsync_port: int = 0
    sockopts: str | None = None
    password_file: str | None = None
    early_input_file: str | None = None
    blocking_io: int = -1
    outbuf_mode: str | None = None
    remote_options: list[str] = field(default_factory=list)
    # daemon mode (`--server --daemon`)
    config_file: str | None = None
    dparams: list[str] = field(default_factory=list)
    no_detach: int = 0
    daemon_bwlimit: int = 0
    # the rows matched, in order (for `unsupported_reason`)
    matched: list[PoptOption] = field(default_factory=list, repr=False)

    @property
    def client_info(self) -> str:
        """The client's capability string: the ``-e`` value (``.iLsfxCIvu``), or ""."""
        return self.shell_cmd or ""

    @property
    def xfer_checksum_choice(self) -> str | None:
        """The transfer checksum forced by ``--checksum-choice``, or None to negotiate."""
        return _canonical_checksum(self.checksum_choice, 0)

    @property
    def file_checksum_choice(self) -> str | None:
        """The ``-c`` file checksum forced by ``--checksum-choice=X,Y``, or None."""
        return _canonical_checksum(self.checksum_choice, 1)

    def delete_timing(self, protocol: int) -> str | None:
        """When deletion runs: 'before', 'during', 'delay', 'after', or None (no delete).

        Plain ``--delete`` means before below protocol 30 and during from 30 on
        (`compat.c:setup_protocol`).
        """
        if not self.delete_mode:
            return None
        if self.delete_before:
            return "before"
        if self.delete_during == 2:
            return "delay"
        if self.delete_during:
            return "during"
        if self.delete_after:
            return "after"
        return "before" if protocol < 30 else "during"

    def server_allows_inc_recurse(self) -> bool:
        """`compat.c:set_allow_inc_recurse` on the server, before the delete resolution."""
        if not self.recurse or self.use_qsort or not self.allow_inc_recurse:
            return False
        if not self.am_sender and (
            self.delete_before or self.delete_after or self.delay_updates or self.prune_empty_dirs
        ):
            return False
        return "i" in self.client_info

    def unsupported_reason(self, refused: Iterable[str] = NOT_YET_SUPPORTED) -> str | None:
        """Return rsync's refusal text for the first option used that is in `refused`, or None.

        The text is what `options.c:create_refuse_error` writes for a server
        ("The server does not support --acls (-A)"); the session reports it like an
        OptionError (exit code 1).
        """
        refused_names = set(refused)
        for row in self.matched:
            if row.long in refused_names:
                letter = f" (-{row.short})" if row.short else ""
                return f"The server does not support --{row.long}{letter}"
        return None


def _canonical_checksum(choice: str | None, part: int) -> str | None:
    if choice is None:
        return None
    names = choice.split(",", 1)
    name = names[part if len(names) > 1 else 0].lower()
    if name == "auto":
        return None
    return "xxh64" if name == "xxhash" else name


def parse_server_args(
    argv: Sequence[str], *, secluded: Sequence[str] | None = None
) -> ServerOptions:
    """Parse a server argv (starting at ``--server``) as rsync's `parse_arguments` does.

    With ``-s`` on the command line and no `secluded` list, the result has
    `needs_secluded_args` set and is not yet validated; parse again with the list read by
    `read_secluded_args` (its first element, rsync's arg0, is skipped).
    Raises OptionError with rsync's text and exit code.
    """
    opts = ServerOptions()
    parser = OptionParser(opts)
    try:
        opts.args = parser.scan(argv)
    except DaemonMode:
        opts = ServerOptions(daemon=True)
        scan_daemon_args(argv, opts)
        return opts
    if opts.protect_args == 1 and opts.am_server:
        if secluded is None:
            parser.check_before_secluded()
            opts.needs_secluded_args = True
            return opts
        if not secluded:
            raise OptionError("argc is zero!")
        opts.protect_args = 2
        opts.args = parser.scan(secluded[1:])
    parser.check_before_secluded()
    parser.finish()
    return opts


def read_secluded_args(buf: ReceiveBuffer) -> list[str] | None:
    """Read the ``-s`` list: NUL-terminated args ending with an empty one (`io.c:read_args`).

    Returns the args without the terminating empty arg, or None (consuming nothing)
    while the list is incomplete. Bytes are decoded as UTF-8 with surrogateescape, so
    any file name survives `os.fsencode`. Raises OptionError past 1 MiB.
    """
    data = buf.peek(len(buf)) or b""
    end = 0 if data.startswith(b"\0") else data.find(b"\0\0")
    if end < 0:
        if len(data) > MAX_SECLUDED_BYTES:
            raise OptionError("secluded argument list is too long")
        return None
    consumed = end + 1 if end == 0 else end + 2
    buf.skip(consumed)
    if end == 0:
        return []
    return [a.decode("utf-8", "surrogateescape") for a in data[:end].split(b"\0")]


