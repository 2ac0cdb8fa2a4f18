"""rsync's option tables as data (`options.c:long_options`, `long_daemon_options`).

Each row mirrors one popt row of rsync 3.5.0 (a superset of 3.2.7's). The action says
what popt or `parse_arguments` does when the row matches:

- ``Set(fields, value)``: POPT_ARG_VAL, POPT_ARG_NONE with a destination (stores 1),
  and the switch cases that only set variables (``-D`` sets two);
- ``Incr(field)``: the switch cases that count (``-v``, ``-H``, ``-z``, …);
- ``BitOr(field, value)``: POPT_BIT_SET;
- ``Store(field)`` / ``Append(field)``: the argument of a STRING/INT row;
- ``AppendRule(kind)``: a filter option, kept as (kind, text) in order;
- ``Special(name)``: any other switch case, run by `option_parser.py`.

Field names are rsync's global variable names so the two code bases grep alike. Only
`server_options` decides what a client actually sends; every row is here anyway because a
user can pass any option to the server with ``-M``/``--remote-option``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .popt import ArgKind, PoptOption

__all__ = [
    "DAEMON_OPTIONS",
    "SERVER_OPTIONS",
    "Append",
    "AppendRule",
    "BitOr",
    "Incr",
    "Set",
    "Special",
    "Store",
]

NONE, INT, STRING = ArgKind.NONE, ArgKind.INT, ArgKind.STRING


@dataclass(frozen=True, slots=True)
class Set:
    """Store a constant in `fields` (one name or several)."""

    fields: str | tuple[str, ...]
    value: object = 1


@dataclass(frozen=True, slots=True)
class Incr:
    """Add one to `field`."""

    field: str


@dataclass(frozen=True, slots=True)
class Append:
    """Append the option's argument to the list `field`."""

    field: str


@dataclass(frozen=True, slots=True)
class AppendRule:
    """Append (kind, argument) to `filter_args`; kind is the option's long name."""

    kind: str


@dataclass(frozen=True, slots=True)
class BitOr:
    """OR a constant into `field` (POPT_BIT_SET)."""

    field: str
    value: int


@dataclass(frozen=True, slots=True)
class Store:
    """Store the option's argument in `field`."""

    field: str


@dataclass(frozen=True, slots=True)
class Special:
    """Run the `parse_arguments` case called `name`."""

    name: str


def _o(long: str | None, short: str | None, kind: ArgKind, action: object) -> PoptOption:
    return PoptOption(long, short, kind, action)


def _val(
    long: str, short: str | None, fields: str | tuple[str, ...], value: object = 1
) -> PoptOption:
    return PoptOption(long, short, NONE, Set(fields, value))


def _toggle(long: str, short: str | None, field: str, on: object = 1) -> list[PoptOption]:
    """--long / -s set `on`; --no-long and --no-s (when there is a letter) set 0."""
    rows = [_val(long, short, field, on), _val(f"no-{long}", None, field, 0)]
    if short is not None:
        rows.append(_val(f"no-{short}", None, field, 0))
    return rows


def _special(long: str | None, short: str | None, kind: ArgKind = NONE) -> PoptOption:
    name = (long or short or "").replace("-", "_")
    return PoptOption(long, short, kind, Special(name))


def _store(long: str, short: str | None, kind: ArgKind, field: str) -> PoptOption:
    return PoptOption(long, short, kind, Store(field))


def _incr(long: str | None, short: str | None, field: str) -> PoptOption:
    return PoptOption(long, short, NONE, Incr(field))


def _append(long: str, field: str) -> PoptOption:
    return PoptOption(long, None, STRING, Append(field))


def _rule(long: str, short: str | None = None) -> PoptOption:
    return PoptOption(long, short, STRING, AppendRule(long))


SERVER_OPTIONS: tuple[PoptOption, ...] = (
    _val("help", None, "help_requested", True),
    _incr("version", "V", "version_opt_cnt"),
    _incr("verbose", "v", "verbose"),
    _val("no-verbose", None, "verbose", 0),
    _val("no-v", None, "verbose", 0),
    _append("info", "info"),
    _append("debug", "debug"),
    _special("stderr", None, STRING),
    _val("msgs2stderr", None, "msgs2stderr", 1),
    _val("no-msgs2stderr", None, "msgs2stderr", 0),
    _incr("quiet", "q", "quiet"),
    _val("motd", None, "output_motd", 1),
    _val("no-motd", None, "output_motd", 0),
    _val("stats", None, "do_stats"),
    _incr("human-readable", "h", "human_readable"),
    _val("no-human-readable", None, "human_readable", 0),
    _val("no-h", None, "human_readable", 0),
    _val("dry-run", "n", "dry_run"),
    _special("archive", "a"),
    *_toggle("recursive", "r", "recurse", 2),
    _val("inc-recursive", None, "allow_inc_recurse", 1),
    _val("no-inc-recursive", None, "allow_inc_recurse", 0),
    _val("i-r", None, "allow_inc_recurse", 1),
    _val("no-i-r", None, "allow_inc_recurse", 0),
    *_toggle("dirs", "d", "xfer_dirs", 2),
    _val("old-dirs", None, "xfer_dirs", 4),
    _val("old-d", None, "xfer_dirs", 4),
    *_toggle("perms", "p", "preserve_perms"),
    _val("executability", "E", "preserve_executability"),
    _val("acls", "A", ("preserve_acls", "preserve_perms")),
    _val("no-acls", None, "preserve_acls", 0),
    _val("no-A", None, "preserve_acls", 0),
    _incr("xattrs", "X", "preserve_xattrs"),
    _val("no-xattrs", None, "preserve_xattrs", 0),
    _val("no-X", None, "preserve_xattrs", 0),
    *_toggle("times", "t", "preserve_mtimes"),
    _special("atimes", "U"),
    _val("no-atimes", None, "preserve_atimes", 0),
    _val("no-U", None, "preserve_atimes", 0),
    _val("open-noatime", None, "open_noatime", 1),
    _val("no-open-noatime", None, "open_noatime", 0),
    *_toggle("crtimes", "N", "preserve_crtimes"),
    *_toggle("omit-dir-times", "O", "omit_dir_times"),
    *_toggle("omit-link-times", "J", "omit_link_times"),
    _special("modify-window", "@", INT),
    _val("super", None, "am_root", 2),
    _val("no-super", None, "am_root", 0),
    _val("fake-super", None, "am_root", -1),
    *_toggle("owner", "o", "preserve_uid"),
    *_toggle("group", "g", "preserve_gid"),
    _o(None, "D", NONE, Set(("preserve_devices", "preserve_specials"))),
    _val("no-D", None, ("preserve_devices", "preserve_specials"), 0),
    _val("devices", None, "preserve_devices", 1),
    _val("no-devices", None, "preserve_devices", 0),
    _val("copy-devices", None, "copy_devices"),
    _val("write-devices", None, "write_devices", 1),
    _val("no-write-devices", None, "write_devices", 0),
    _val("specials", None, "preserve_specials", 1),
    _val("no-specials", None, "preserve_specials", 0),
    _val("drop-D", None, "drop_devices", 1),
    _val("no-drop-D", None, "drop_devices", 0),
    _store("confine-root", None, STRING, "confine_root"),
    *_toggle("links", "l", "preserve_links"),
    _val("copy-links", "L", "copy_links"),
    _val("copy-unsafe-links", None, "copy_unsafe_links"),
    _val("safe-links", None, "safe_symlinks"),
    _val("insecure-links", None, "insecure_links", 1),
    _val("no-insecure-links", None, "insecure_links", 0),
    _val("munge-links", None, "munge_symlinks", 1),
    _val("no-munge-links", None, "munge_symlinks", 0),
    _val("copy-dirlinks", "k", "copy_dirlinks"),
    _val("keep-dirlinks", "K", "keep_dirlinks"),
    _incr("hard-links", "H", "preserve_hard_links"),
    _val("no-hard-links", None, "preserve_hard_links", 0),
    _val("no-H", None, "preserve_hard_links", 0),
    *_toggle("relative", "R", "relative_paths"),
    _val("implied-dirs", None, "implied_dirs", 1),
    _val("no-implied-dirs", None, "implied_dirs", 0),
    _val("i-d", None, "implied_dirs", 1),
    _val("no-i-d", None, "implied_dirs", 0),
    _append("chmod", "chmod"),
    _val("ignore-times", "I", "ignore_times"),
    _val("size-only", None, "size_only"),
    _incr("one-file-system", "x", "one_file_system"),
    _val("no-one-file-system", None, "one_file_system", 0),
    _val("no-x", None, "one_file_system", 0),
    _val("update", "u", "update_only"),
    _val("existing", None, "ignore_non_existing"),
    _val("ignore-non-existing", None, "ignore_non_existing"),
    _val("ignore-existing", None, "ignore_existing"),
    _special("max-size", None, STRING),
    _special("min-size", None, STRING),
    _store("max-alloc", None, STRING, "max_alloc_arg"),
    *_toggle("sparse", "S", "sparse_files"),
    _val("preallocate", None, "preallocate_files"),
    _val("inplace", None, "inplace", 1),
    _val("no-inplace", None, "inplace", 0),
    # a server counts --append: the client sends it twice for --append-verify
    _incr("append", None, "append_mode"),
    _val("append-verify", None, "append_mode", 2),
    _val("no-append", None, "append_mode", 0),
    _val("del", None, "delete_during"),
    _val("delete", None, "delete_mode"),
    _val("delete-before", None, "delete_before"),
    _val("delete-during", None, "delete_during", 1),
    _val("delete-delay", None, "delete_during", 2),
    _val("delete-after", None, "delete_after"),
    _val("delete-excluded", None, "delete_excluded"),
    _o("delete-missing-args", None, NONE, BitOr("missing_args", 2)),
    _o("ignore-missing-args", None, NONE, BitOr("missing_args", 1)),
    _val("remove-sent-files", None, "remove_source_files", 2),
    _val("remove-source-files", None, "remove_source_files", 1),
    _val("force", None, "force_delete", 1),
    _val("no-force", None, "force_delete", 0),
    _val("ignore-errors", None, "ignore_errors", 1),
    _val("no-ignore-errors", None, "ignore_errors", 0),
    _store("max-delete", None, INT, "max_delete"),
    _special(None, "F"),
    _rule("filter", "f"),
    _rule("exclude"),
    _rule("include"),
    _rule("exclude-from"),
    _rule("include-from"),
    _val("cvs-exclude", "C", "cvs_exclude"),
    *_toggle("whole-file", "W", "whole_file"),
    *_toggle("checksum", "c", "always_checksum"),
    _store("checksum-choice", None, STRING, "checksum_choice"),
    _store("cc", None, STRING, "checksum_choice"),
    _special("block-size", "B", STRING),
    _special("compare-dest", None, STRING),
    _special("copy-dest", None, STRING),
    _special("link-dest", None, STRING),
    _incr("fuzzy", "y", "fuzzy_basis"),
    _val("no-fuzzy", None, "fuzzy_basis", 0),
    _val("no-y", None, "fuzzy_basis", 0),
    _incr("compress", "z", "do_compression"),
    _val("old-compress", None, "compress_choice", "zlib"),
    _val("new-compress", None, "compress_choice", "zlibx"),
    _special("no-compress", None),
    _o("no-z", None, NONE, Special("no_compress")),
    _store("compress-choice", None, STRING, "compress_choice"),
    _store("zc", None, STRING, "compress_choice"),
    _store("skip-compress", None, STRING, "skip_compress"),
    _store("compress-level", None, INT, "do_compression_level"),
    _store("zl", None, INT, "do_compression_level"),
    _store("compress-threads", None, INT, "do_compression_threads"),
    _store("zt", None, INT, "do_compression_threads"),
    _o(None, "P", NONE, Set(("do_progress", "keep_partial"))),
    _val("progress", None, "do_progress", 1),
    _val("no-progress", None, "do_progress", 0),
    _val("partial", None, "keep_partial", 1),
    _val("no-partial", None, "keep_partial", 0),
    _store("partial-dir", None, STRING, "partial_dir"),
    _val("delay-updates", None, "delay_updates", 1),
    _val("no-delay-updates", None, "delay_updates", 0),
    *_toggle("prune-empty-dirs", "m", "prune_empty_dirs"),
    _store("log-file", None, STRING, "logfile_name"),
    _store("log-file-format", None, STRING, "logfile_format"),
    _store("out-format", None, STRING, "stdout_format"),
    _store("log-format", None, STRING, "stdout_format"),
    _incr("itemize-changes", "i", "itemize_changes"),
    _val("no-itemize-changes", None, "itemize_changes", 0),
    _val("no-i", None, "itemize_changes", 0),
    _special("bwlimit", None, STRING),
    _val("no-bwlimit", None, "bwlimit", 0),
    _val("backup", "b", "make_backups", 1),
    _val("no-backup", None, "make_backups", 0),
    _store("backup-dir", None, STRING, "backup_dir"),
    _store("suffix", None, STRING, "backup_suffix"),
    _val("list-only", None, "list_only", 2),
    _special("read-batch", None, STRING),
    _special("write-batch", None, STRING),
    _special("only-write-batch", None, STRING),
    _store("files-from", None, STRING, "files_from"),
    _val("from0", "0", "eol_nulls", 1),
    _val("no-from0", None, "eol_nulls", 0),
    _special("old-args", None),
    _val("no-old-args", None, "old_style_args", 0),
    _val("secluded-args", "s", "protect_args", 1),
    _val("no-secluded-args", None, "protect_args", 0),
    _val("protect-args", None, "protect_args", 1),
    _val("no-protect-args", None, "protect_args", 0),
    _val("no-s", None, "protect_args", 0),
    _val("trust-sender", None, "trust_sender", 1),
    _val("numeric-ids", None, "numeric_ids", 1),
    _val("no-numeric-ids", None, "numeric_ids", 0),
    _special("usermap", None, STRING),
    _special("groupmap", None, STRING),
    _special("chown", None, STRING),
    _store("timeout", None, INT, "io_timeout"),
    _val("no-timeout", None, "io_timeout", 0),
    _store("contimeout", None, INT, "connect_timeout"),
    _val("no-contimeout", None, "connect_timeout", 0),
    _val("fsync", None, "do_fsync"),
    _special("stop-after", None, STRING),
    _o("time-limit", None, STRING, Special("stop_after")),
    _store("stop-at", None, STRING, "stop_at"),
    _store("rsh", "e", STRING, "shell_cmd"),
    _store("rsync-path", None, STRING, "rsync_path"),
    _store("temp-dir", "T", STRING, "tmpdir"),
    _store("iconv", None, STRING, "iconv_opt"),
    _val("no-iconv", None, "iconv_opt", None),
    _val("ipv4", "4", "default_af_hint", 4),
    _val("ipv6", "6", "default_af_hint", 6),
    _val("8-bit-output", "8", "allow_8bit_chars", 1),
    _val("no-8-bit-output", None, "allow_8bit_chars", 0),
    _val("no-8", None, "allow_8bit_chars", 0),
    _val("mkpath", None, "mkpath_dest_arg", 1),
    _val("no-mkpath", None, "mkpath_dest_arg", 0),
    # rsync's table says "qsort" although server_options sends "--use-qsort": a real
    # server rejects --use-qsort as an unknown option, and so do we (parity).
    _val("qsort", None, "use_qsort"),
    _store("copy-as", None, STRING, "copy_as"),
    _store("address", None, STRING, "bind_address"),
    _store("port", None, INT, "rsync_port"),
    _store("sockopts", None, STRING, "sockopts"),
    _store("password-file", None, STRING, "password_file"),
    _store("early-input", None, STRING, "early_input_file"),
    _val("blocking-io", None, "blocking_io", 1),
    _val("no-blocking-io", None, "blocking_io", 0),
    _store("outbuf", None, STRING, "outbuf_mode"),
    _special("remote-option", "M", STRING),
    _store("protocol", None, INT, "protocol_version"),
    _store("checksum-seed", None, INT, "checksum_seed"),
    _val("server", None, "am_server"),
    _special("sender", None),
    # all of these switch rsync into daemon-mode option parsing
    _o("config", None, STRING, Special("daemon")),
    _special("daemon", None),
    _o("dparam", None, STRING, Special("daemon")),
    _o("detach", None, NONE, Special("daemon")),
    _o("no-detach", None, NONE, Special("daemon")),
)

# options.c:long_daemon_options, used once any daemon option has been seen
DAEMON_OPTIONS: tuple[PoptOption, ...] = (
    _store("address", None, STRING, "bind_address"),
    _store("bwlimit", None, INT, "daemon_bwlimit"),
    _store("config", None, STRING, "config_file"),
    _val("daemon", None, "daemon"),
    _special("dparam", "M", STRING),
    _val("ipv4", "4", "default_af_hint", 4),
    _val("ipv6", "6", "default_af_hint", 6),
    _val("detach", None, "no_detach", 0),
    _val("no-detach", None, "no_detach", 1),
    _store("log-file", None, STRING, "logfile_name"),
    _store("log-file-format", None, STRING, "logfile_format"),
    _store("port", None, INT, "rsync_port"),
    _store("sockopts", None, STRING, "sockopts"),
    _store("protocol", None, INT, "protocol_version"),
    _val("server", None, "am_server"),
    _store("temp-dir", "T", STRING, "tmpdir"),
    _incr("verbose", "v", "verbose"),
    _val("no-verbose", None, "verbose", 0),
    _val("no-v", None, "verbose", 0),
    _val("help", "h", "help_requested", True),
)
