"""What `options.c:parse_arguments` does with each option, and the checks after its loop.

`OptionParser.apply` performs a matched row's action on a ServerOptions (the table in
`option_table.py` says which); the `_on_*` methods are the cases of rsync's switch that
need more than setting a variable. `check_before_secluded` and `finish` are the code after
the loop, split where rsync returns early to read ``-s`` args, in rsync's order so the
first error raised is the one rsync would print.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from .option_table import (
    DAEMON_OPTIONS,
    SERVER_OPTIONS,
    Append,
    AppendRule,
    BitOr,
    Incr,
    Set,
    Special,
    Store,
)
from .option_values import log_format_has, parse_size_arg
from .popt import PoptError, PoptOption, scan

if TYPE_CHECKING:
    from .options import ServerOptions

__all__ = ["DaemonMode", "OptionError", "OptionParser", "scan_daemon_args"]

RERR_SYNTAX: Final = 1
RERR_UNSUPPORTED: Final = 4
PROTOCOL_VERSION: Final = 32
MAX_BLOCK_SIZE: Final = 1 << 17
OLD_MAX_BLOCK_SIZE: Final = 1 << 29
MAX_BASIS_DIRS: Final = 20
INT_MIN: Final = -(2**31)
BACKUP_SUFFIX: Final = "~"
TMP_PARTIAL_DIR: Final = ".~tmp~"

CHECKSUM_NAMES_RSYNC: Final = ("xxh128", "xxh3", "xxh64", "xxhash", "md5", "md4", "sha1", "none")
COMPRESS_NAMES_RSYNC: Final = ("zstd", "lz4", "zlibx", "zlib", "none")


class OptionError(Exception):
    """The argv is not acceptable; ``str(e)`` is the text rsync puts in its error.

    `exit_code` is rsync's (1, RERR_SYNTAX, for parse errors; 4, RERR_UNSUPPORTED, for
    an unknown checksum or compressor name). `stderr_line` is the whole line a real
    server writes to stderr before "rsync error: ...": option errors are prefixed with
    "rsync: " (`options.c:option_error`), name errors are not.
    """

    def __init__(
        self, message: str, exit_code: int = RERR_SYNTAX, *, prefixed: bool = True
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.prefixed = prefixed

    @property
    def stderr_line(self) -> str:
        """The stderr line a real rsync server prints for this error (with newline)."""
        return f"rsync: {self}\n" if self.prefixed else f"{self}\n"


class DaemonMode(Exception):
    """A daemon option was seen: rsync reparses the whole argv with its daemon table."""


class OptionParser:
    """Applies matched rows to one ServerOptions (the `parse_arguments` switch)."""

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        # per id kind ("user"/"group"): whether its map came from --chown
        self.map_from_chown: dict[str, bool] = {}

    def scan(self, argv: Sequence[str]) -> list[str]:
        """Scan `argv` into the options; return the positional args."""
        try:
            return scan(argv, SERVER_OPTIONS, self.apply)
        except PoptError as e:
            prefix = "on remote machine: " if self.opts.am_server else ""
            raise OptionError(f"{prefix}{e}") from None

    def apply(self, row: PoptOption, value: int | str | None) -> None:
        """Perform `row`'s action with its parsed `value`."""
        opts = self.opts
        opts.matched.append(row)
        action = row.action
        if isinstance(action, Set):
            fields = (action.fields,) if isinstance(action.fields, str) else action.fields
            for name in fields:
                setattr(opts, name, action.value)
        elif isinstance(action, Incr):
            setattr(opts, action.field, getattr(opts, action.field) + 1)
        elif isinstance(action, Store):
            setattr(opts, action.field, value)
        elif isinstance(action, Append):
            getattr(opts, action.field).append(value)
        elif isinstance(action, AppendRule):
            opts.filter_args.append((action.kind, str(value)))
        elif isinstance(action, BitOr):
            setattr(opts, action.field, getattr(opts, action.field) | action.value)
        elif isinstance(action, Special):
            getattr(self, f"_on_{action.name}")(value)

    # --- the remaining cases of parse_arguments' switch -----------------------------------
    def _on_sender(self, _: object) -> None:
        if not self.opts.am_server:  # rsync prints its usage text here
            raise OptionError("--sender is only allowed with --server")
        self.opts.am_sender = 1

    def _on_daemon(self, _: object) -> None:
        raise DaemonMode

    def _on_modify_window(self, value: object) -> None:
        assert isinstance(value, int)
        self.opts.modify_window = value
        self.opts.modify_window_set = 1

    def _on_archive(self, _: object) -> None:
        o = self.opts
        if not o.recurse:  # keep recurse == 2 from -r
            o.recurse = 1
        o.preserve_links = o.preserve_perms = o.preserve_mtimes = 1
        o.preserve_gid = o.preserve_uid = o.preserve_devices = o.preserve_specials = 1

    def _on_atimes(self, _: object) -> None:
        self.opts.preserve_atimes += 1
        if self.opts.preserve_atimes > 1:
            self.opts.open_noatime = 1

    def _on_F(self, _: object) -> None:
        count = sum(1 for row in self.opts.matched if row.short == "F" and row.long is None)
        if count == 1:
            self.opts.filter_args.append(("filter", ": /.rsync-filter"))
        elif count == 2:
            self.opts.filter_args.append(("filter", "- .rsync-filter"))

    def _on_no_compress(self, _: object) -> None:
        self.opts.do_compression = 0
        self.opts.compress_choice = None

    def _on_old_args(self, _: object) -> None:
        o = self.opts
        o.old_style_args = 1 if o.old_style_args <= 0 else o.old_style_args + 1

    def _on_remote_option(self, value: object) -> None:
        text = str(value)
        if not text.startswith("-"):
            raise OptionError(f"Remote option must start with a dash: {text}")
        self.opts.remote_options.append(text)

    def _on_write_batch(self, value: object) -> None:
        self.opts.batch_name, self.opts.write_batch = str(value), 1

    def _on_only_write_batch(self, value: object) -> None:
        self.opts.batch_name, self.opts.write_batch = str(value), -1

    def _on_read_batch(self, value: object) -> None:
        self.opts.batch_name, self.opts.read_batch = str(value), 1

    def _on_block_size(self, value: object) -> None:
        # the limit follows the protocol known so far: ours, or an earlier --protocol
        protocol = self.opts.protocol_version or PROTOCOL_VERSION
        limit = OLD_MAX_BLOCK_SIZE if protocol < 30 else MAX_BLOCK_SIZE
        self.opts.block_size = _size(str(value), "b", "block-size", 0, limit)

    def _on_max_size(self, value: object) -> None:
        self.opts.max_size = _size(str(value), "b", "max-size", 0, -1)

    def _on_min_size(self, value: object) -> None:
        self.opts.min_size = _size(str(value), "b", "min-size", 0, -1)

    def _on_bwlimit(self, value: object) -> None:
        size = _size(str(value), "K", "bwlimit", 512, -1, unlimited_0=True)
        self.opts.bwlimit = (size + 512) // 1024

    def _on_link_dest(self, value: object) -> None:
        self._basis_dir("--link-dest", str(value))

    def _on_copy_dest(self, value: object) -> None:
        self._basis_dir("--copy-dest", str(value))

    def _on_compare_dest(self, value: object) -> None:
        self._basis_dir("--compare-dest", str(value))

    def _basis_dir(self, option: str, path: str) -> None:
        o = self.opts
        if o.alt_dest_type and o.alt_dest_type != option:
            raise OptionError(
                f"ERROR: the {option} option conflicts with the {o.alt_dest_type} option"
            )
        o.alt_dest_type = option
        if len(o.basis_dirs) >= MAX_BASIS_DIRS:
            raise OptionError(f"ERROR: at most {MAX_BASIS_DIRS} {option} args may be specified")
        o.basis_dirs.append(path)

    def _on_usermap(self, value: object) -> None:
        self._id_map("user", str(value), via_chown=False)

    def _on_groupmap(self, value: object) -> None:
        self._id_map("group", str(value), via_chown=False)

    def _on_chown(self, value: object) -> None:
        user, sep, group = str(value).partition(":")
        if user:
            self._id_map("user", f"*:{user}", via_chown=True)
        if sep and group:
            self._id_map("group", f"*:{group}", via_chown=True)

    def _id_map(self, kind: str, mapping: str, *, via_chown: bool) -> None:
        o = self.opts
        current = o.usermap if kind == "user" else o.groupmap
        if current is not None:
            prior_chown = self.map_from_chown[kind]
            if via_chown:
                if not prior_chown:
                    raise OptionError(f"--chown conflicts with prior --{kind}map.")
                raise OptionError(f"You can only specify a {kind}-affecting --chown once.")
            if prior_chown:
                raise OptionError(f"--{kind}map conflicts with prior --chown.")
            raise OptionError(f"You can only specify --{kind}map once.")
        self.map_from_chown[kind] = via_chown
        if kind == "user":
            o.usermap, o.preserve_uid = mapping, 1
        else:
            o.groupmap, o.preserve_gid = mapping, 1

    def _on_stop_after(self, value: object) -> None:
        text = str(value)
        body = text.lstrip()
        sign = -1 if body.startswith("-") else 1
        body = body.lstrip("+-")
        digits = body[: len(body) - len(body.lstrip("0123456789"))]
        minutes = sign * int(digits or "0")  # atol()
        if minutes <= 0:
            raise OptionError(f"invalid --stop-after value: {text}")
        self.opts.stop_after_minutes = minutes

    def _on_stderr(self, value: object) -> None:
        text = str(value)
        for mode, level in (("errors", 2), ("all", 1), ("client", 0)):
            if text and mode.startswith(text):
                self.opts.msgs2stderr = level
                self.opts.saw_stderr_opt = 1
                return
        raise OptionError(f'--stderr mode "{text}" is not one of errors, all, or client')

    # --- after the loop ---------------------------------------------------------------------
    def check_before_secluded(self) -> None:
        """The checks `parse_arguments` makes before its early return for ``-s``."""
        o = self.opts
        if o.msgs2stderr != 2:
            o.saw_stderr_opt = 1
        if o.max_alloc_arg:
            # 0 means unlimited (3.2.7-3.4.x; 3.5.0 rejects it, but says "or 0 for unlimited")
            size = _size(o.max_alloc_arg, "B", "max-alloc", 1024 * 1024, -1, unlimited_0=True)
            o.max_alloc = size or None
        if o.old_style_args < 0:
            o.old_style_args = 0
        elif o.old_style_args:
            if o.protect_args > 0:
                raise OptionError("--secluded-args conflicts with --old-args.")
            o.protect_args = 0
        o.protect_args = max(o.protect_args, 0)
        if o.checksum_choice is not None:
            if o.checksum_choice.lower() in ("auto", "auto,auto"):
                o.checksum_choice = None
            else:
                _check_checksum_names(o.checksum_choice)
        self._resolve_compression()
        if o.fuzzy_basis > 1:
            o.fuzzy_basis = len(o.basis_dirs) + 1

    def _resolve_compression(self) -> None:
        """`parse_compress_choice(0)` and the level check in `parse_arguments`."""
        o = self.opts
        if not o.compress_choice and o.do_compression > 1:
            o.compress_choice = "zlibx"
        if o.compress_choice is not None:
            name = o.compress_choice.lower()
            if name == "auto":
                o.compress_choice = None
            elif name not in COMPRESS_NAMES_RSYNC:
                raise OptionError(
                    f"unknown compress name: {o.compress_choice}", RERR_UNSUPPORTED, prefixed=False
                )
            elif name == "none":
                o.compress_choice, o.do_compression = None, 0
            else:
                o.compress_choice, o.do_compression = name, max(o.do_compression, 1)
        if o.do_compression_level is not None and not o.do_compression:
            o.do_compression = 1  # CPRES_AUTO: a level alone asks for compression

    def finish(self) -> None:
        """The rest of `parse_arguments` after the ``-s`` early return, in rsync's order."""
        o = self.opts
        if o.write_batch and o.read_batch:
            raise OptionError("--write-batch and --read-batch can not be used together")
        if o.write_batch > 0 or o.read_batch:
            which = "write" if o.write_batch else "read"
            o.notices.append(f"ignoring --{which}-batch option sent to server")
            o.read_batch = o.write_batch = 0
            o.batch_name = None
        if o.max_delete < 0 and o.max_delete != INT_MIN:
            o.max_delete = 0  # negative means "no deletions"
        if o.files_from:
            if o.recurse == 1:  # keep recurse == 2 from an explicit -r
                o.recurse = 0
            if o.xfer_dirs < 0:
                o.xfer_dirs = 1
        if o.xfer_dirs >= 4:
            o.filter_args.append(("filter", "- /*/*"))
            o.recurse = o.xfer_dirs = 1
        elif o.recurse:
            o.xfer_dirs = 1
        elif o.xfer_dirs < 0:
            o.xfer_dirs = 1 if o.list_only else 0
        if o.relative_paths < 0:
            o.relative_paths = 1 if o.files_from else 0
        if not o.relative_paths:
            o.implied_dirs = 0
        if o.delete_before + (1 if o.delete_during else 0) + o.delete_after > 1:
            raise OptionError("You may not combine multiple --delete-WHEN options.")
        if o.delete_before or o.delete_during or o.delete_after or o.delete_excluded:
            o.delete_mode = 1
        if not o.xfer_dirs and o.delete_mode:
            raise OptionError("--delete does not work without --recursive (-r) or --dirs (-d).")
        if o.missing_args == 3:
            o.missing_args = 2
        if o.remove_source_files:
            o.need_messages_from_generator = 1
        self._finish_backups()
        self._finish_log_format()
        if o.dry_run:
            o.do_xfers = 0
        self._finish_partial()
        if o.files_from:
            self._finish_files_from()

    def _finish_backups(self) -> None:
        o = self.opts
        if o.backup_suffix is None:
            o.backup_suffix = "" if o.backup_dir else BACKUP_SUFFIX
        if "/" in o.backup_suffix:
            raise OptionError(f"--suffix cannot contain slashes: {o.backup_suffix}")
        if o.backup_dir is not None:
            o.make_backups = 1  # --backup-dir implies --backup
            path = o.backup_dir
            while path.startswith("./"):
                path = path[2:]
            if path == ".":
                path = ""
            if path:
                o.backup_dir = path if path.endswith("/") else path + "/"
            else:
                o.backup_dir = None
                if not o.backup_suffix and not o.am_sender:
                    raise OptionError(
                        "--suffix cannot be empty when --backup-dir is the same as the dest dir"
                    )
        elif not o.backup_suffix and not o.am_sender:
            raise OptionError("--suffix cannot be empty without a --backup-dir")
        if o.make_backups and not o.backup_dir:
            o.omit_dir_times = -1  # implied, so not sent on

    def _finish_log_format(self) -> None:
        o = self.opts
        if o.stdout_format:
            if log_format_has(o.stdout_format, "I"):
                o.stdout_format_has_i = 2
            elif log_format_has(o.stdout_format, "i"):
                o.stdout_format_has_i = o.itemize_changes | 1
        elif o.itemize_changes:
            o.stdout_format = "%i %n%L"
            o.stdout_format_has_i = o.itemize_changes
        if o.stdout_format_has_i or log_format_has(o.stdout_format, "o"):
            o.stdout_format_has_o_or_i = 1

    def _finish_partial(self) -> None:
        o = self.opts
        if o.append_mode:
            if o.whole_file > 0:
                raise OptionError("--append cannot be used with --whole-file")
            o.inplace = 1
        if o.write_devices:
            o.inplace = 1
        if o.delay_updates and not o.partial_dir:
            o.partial_dir = TMP_PARTIAL_DIR
        if o.inplace:
            if o.partial_dir:
                first = "append" if o.append_mode else "inplace"
                second = "delay-updates" if o.delay_updates else "partial-dir"
                raise OptionError(f"--{first} cannot be used with --{second}")
            o.keep_partial = 0
        elif o.partial_dir is not None:
            cleaned = _clean_fname(o.partial_dir)
            o.partial_dir = None if cleaned in ("", ".") else cleaned
            o.keep_partial = 1

    def _finish_files_from(self) -> None:
        o = self.opts
        assert o.files_from is not None
        if len(o.args) > 2:  # rsync prints its usage text here
            raise OptionError("--files-from allows at most one source and one destination arg")
        if o.files_from != "-" and _has_hostspec(o.files_from):
            raise OptionError("The --files-from sent to the server cannot specify a host.")


def scan_daemon_args(argv: Sequence[str], opts: ServerOptions) -> None:
    """Reparse the whole argv with `long_daemon_options`, as rsync does in daemon mode."""

    def apply(row: PoptOption, value: int | str | None) -> None:
        if isinstance(row.action, Special):  # --dparam / -M
            text = str(value)
            if "=" not in text:
                raise OptionError(f"--dparam value is missing an '=': {text}", prefixed=False)
            opts.dparams.append(text)
        else:
            parser.apply(row, value)

    parser = OptionParser(opts)
    try:
        opts.args = scan(argv, DAEMON_OPTIONS, apply)
    except PoptError as e:
        raise OptionError(f"{e} (in daemon mode)") from None


def _check_checksum_names(choice: str) -> None:
    """`checksum.c:parse_checksum_choice` name validation (exit code 4 on failure)."""
    first, comma, second = choice.partition(",")
    # (name, what rsync prints): rsync prints from the name's start to the string's end
    names = [(first, choice), (second, second)] if comma else [(choice, choice)]
    for name, shown in names:
        if name.lower() not in (*CHECKSUM_NAMES_RSYNC, "auto"):
            raise OptionError(f"unknown checksum name: {shown}", RERR_UNSUPPORTED, prefixed=False)


def _size(
    text: str, suffix: str, name: str, min_value: int, max_value: int, *, unlimited_0: bool = False
) -> int:
    size, error = parse_size_arg(text, suffix, name, min_value, max_value, unlimited_0=unlimited_0)
    if error is not None:
        raise OptionError(error)
    return size


def _clean_fname(path: str) -> str:
    """`util1.c:clean_fname` with CFN_COLLAPSE_DOT_DOT_DIRS, enough for --partial-dir."""
    absolute = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if absolute:
        return "/" + cleaned
    return cleaned or "."


def _has_hostspec(path: str) -> bool:
    """Whether --files-from names a host (`options.c:check_for_hostspec`): HOST:PATH."""
    if path.startswith("rsync://"):
        return True
    head, sep, _ = path.partition(":")
    return bool(sep and head and "/" not in head)
