"""Server argv parsing: captured client command lines, and errors checked against real rsync.

The command lines below were captured from rsync 3.2.7 and 3.5.0 clients through
tools/fake_rsh.py (RSYNCD_PY_CAPTURE) and rsync-protocol.md A.1. The error tests run the
real `rsync --server` with the same argv (stdin empty, so it stops right after option
parsing) and require our first stderr line and exit code to equal its own.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.options import (
    OptionError,
    ServerOptions,
    parse_server_args,
    read_secluded_args,
)

RSYNC = shutil.which("rsync")
needs_rsync = pytest.mark.skipif(RSYNC is None, reason="real rsync not installed")


def parse(command: str) -> ServerOptions:
    """Parse a captured remote command ("rsync --server ...") as the transport would."""
    argv = shlex.split(command)
    assert argv[0] == "rsync"
    return parse_server_args(argv[1:])


# (remote command, expected settings)
CAPTURED = [
    (
        "rsync --server -vlogDtpre.iLsfxCIvu . /tmp/cap/dst/",
        dict(verbose=1, preserve_links=1, preserve_uid=1, preserve_gid=1, preserve_devices=1,
             preserve_specials=1, preserve_mtimes=1, preserve_perms=1, recurse=2, xfer_dirs=1,
             shell_cmd=".iLsfxCIvu", args=[".", "/tmp/cap/dst/"], am_sender=0),
    ),
    ("rsync --server -vlogDtprze.iLsfxCIvu . dst/", dict(do_compression=1, compress_choice=None)),
    (
        "rsync --server -vlHogDtpre.iLsfxCIvu --delete . dst/",
        dict(preserve_hard_links=1, delete_mode=1, delete_before=0, delete_during=0),
    ),
    ("rsync --server -vlogDtprce.iLsfxCIvu --inplace . dst/", dict(always_checksum=1, inplace=1)),
    (
        "rsync --server -logDtpAXrSe.iLsfxCIvu . dst/",
        dict(verbose=0, preserve_acls=1, preserve_xattrs=1, sparse_files=1),
    ),
    (
        "rsync --server -vlogDtpre.iLsfxCIvu --checksum-choice=xxh128 --compress-choice=zstd . d/",
        dict(checksum_choice="xxh128", compress_choice="zstd", do_compression=1),
    ),
    (
        "rsync --server -vlogDtprze.iLsfxCIvu --old-compress . d/",
        dict(compress_choice="zlib", do_compression=1),
    ),
    (
        "rsync --server -vlogDtpre.iLsfxCIvu --new-compress . d/",
        dict(compress_choice="zlibx", do_compression=1),
    ),
    ("rsync --server -vlogDtpr . d/", dict(shell_cmd=None, recurse=2)),
    ("rsync --server -vlogDtpre.LsfxCIvu . d/", dict(shell_cmd=".LsfxCIvu")),
    ("rsync --server -vnlogDtpre.iLsfxCIvu . d/", dict(dry_run=1, do_xfers=0)),
    (
        "rsync --server --sender -vlogDtpre.iLsfxCIvu . /tmp/cap/src/",
        dict(am_sender=1, am_server=1, args=[".", "/tmp/cap/src/"]),
    ),
    (
        "rsync --server --sender -de.LsfxCIvu . src/",
        dict(am_sender=1, xfer_dirs=2, recurse=0, shell_cmd=".LsfxCIvu"),
    ),
    ("rsync --server -svlogDtpre.iLsfxCIvu", dict(protect_args=1, needs_secluded_args=True)),
    (
        "rsync --server -vlogDtpre.iLsfxCIvu --max-delete=5 --delete-after --delete-excluded"
        " --force . d/",
        dict(max_delete=5, delete_after=1, delete_excluded=1, force_delete=1, delete_mode=1),
    ),
    (
        "rsync --server -vlogDtpre.iLsfxCIvu --min-size=1 --max-size=10485760 --delete-delay"
        " --size-only --stats --ignore-errors . d/",
        dict(min_size=1, max_size=10485760, delete_during=2, size_only=1, do_stats=1,
             ignore_errors=1),
    ),
    (
        "rsync --server -bltre.iLsfxCIvu -B2048 --timeout=30 --bwlimit=1024 --backup-dir bak"
        " --suffix=.old . d/",
        dict(make_backups=1, block_size=2048, io_timeout=30, bwlimit=1024, backup_dir="bak/",
             backup_suffix=".old", omit_dir_times=0),
    ),
    (
        "rsync --server -ltre.iLsfxCIvu --modify-window=2 --checksum-seed=7 --partial-dir .part"
        " --delay-updates . d/",
        dict(modify_window=2, modify_window_set=1, checksum_seed=7, partial_dir=".part",
             delay_updates=1, keep_partial=1),
    ),
    (
        "rsync --server -ltre.iLsfxCIvu --copy-unsafe-links --safe-links --numeric-ids --append"
        " --append . d/",
        dict(copy_unsafe_links=1, safe_symlinks=1, numeric_ids=1, append_mode=2, inplace=1),
    ),
    (
        r"rsync --server -logtre.iLsfxCIvu --usermap=0:1 --groupmap=\*:2 --ignore-existing"
        " --existing --temp-dir /tmp --fsync . d/",
        dict(usermap="0:1", groupmap="*:2", ignore_existing=1, ignore_non_existing=1,
             tmpdir="/tmp", do_fsync=1),
    ),
    (
        "rsync --server -ltrze.iLsfxCIvu --compress-level=3 --link-dest /tmp/cap/src"
        " --remove-source-files . d/",
        dict(do_compression_level=3, basis_dirs=["/tmp/cap/src"], alt_dest_type="--link-dest",
             remove_source_files=1, need_messages_from_generator=1),
    ),
    (
        "rsync --server --sender -ltrze.iLsfxCIvu --skip-compress=gz/jpg --copy-devices . src/",
        dict(skip_compress="gz/jpg", copy_devices=1),
    ),
    (
        "rsync --server --sender -ltrRe.iLsfxCIvu --files-from=- --from0 . src/",
        dict(files_from="-", eol_nulls=1, relative_paths=1, recurse=2, implied_dirs=1),
    ),
    (
        "rsync --server -ltrRe.iLsfxCIvu --no-implied-dirs . d/",
        dict(relative_paths=1, implied_dirs=0),
    ),
    (
        "rsync --server -lKmOJtre.iLsfxCIvu --preallocate --mkpath --fake-super . d/",
        dict(keep_dirlinks=1, prune_empty_dirs=1, omit_dir_times=1, omit_link_times=1,
             preallocate_files=1, mkpath_dest_arg=1, am_root=-1),
    ),
    (
        "rsync --server -lyHHtUUErxxe.iLsfxCIvu . d/",
        dict(fuzzy_basis=1, preserve_hard_links=2, preserve_atimes=2, open_noatime=1,
             preserve_executability=1, one_file_system=2),
    ),
    (
        "rsync --server -ltre.iLsfxCIvu --delete-missing-args -@-1 --open-noatime . d/",
        dict(missing_args=2, modify_window=-1, open_noatime=1),
    ),
    (
        "rsync --server -vvvltre.iLsfxCIvu --msgs2stderr --max-alloc=2G --inplace"
        " --write-devices . d/",
        dict(verbose=3, msgs2stderr=1, saw_stderr_opt=1, max_alloc=2 << 30, write_devices=1),
    ),
    (
        "rsync --server --sender -lLktre.iLsfxCIvu --no-msgs2stderr . src/",
        dict(copy_links=1, copy_dirlinks=1, msgs2stderr=0),
    ),
    ("rsync --server -qlWtrSe.iLsfxCIvu --inplace . d/", dict(quiet=1, whole_file=1)),
    ("rsync --server --sender -ltre.iLsfxCIvu --list-only . src/", dict(list_only=2)),
    (
        "rsync --server -ltre.iLsfxCIvu --log-format=%i --partial . d/",
        dict(stdout_format="%i", stdout_format_has_i=1, stdout_format_has_o_or_i=1,
             keep_partial=1),
    ),
    (
        "rsync --server -logDtprce.iLsfxCIvu --checksum-choice=md5,xxh3 --compress-choice=lz4"
        " . d/",
        dict(checksum_choice="md5,xxh3", compress_choice="lz4"),
    ),
    (
        "rsync --server -bulogtXrCe.LsfxCIvu --backup-dir bk2 --delete-during . d/",
        dict(make_backups=1, update_only=1, cvs_exclude=1, delete_during=1, delete_mode=1),
    ),
    # macOS openrsync sends split flags (apache/tooling-trusted-releases#155)
    (
        "rsync --server -g -l -o -p -D -r -t -v --dirs . d/",
        dict(preserve_gid=1, preserve_links=1, preserve_uid=1, preserve_perms=1,
             preserve_devices=1, recurse=2, preserve_mtimes=1, verbose=1, xfer_dirs=1),
    ),
    # popt details: "=" after a short option, empty and hex ints, options after positionals
    ("rsync --server -B=2048 --timeout= . d/ --checksum-seed=0x10", dict(block_size=2048,
                                                                       io_timeout=0,
                                                                       checksum_seed=16)),
    ("rsync --server -r -- . --delete", dict(args=[".", "--delete"], delete_mode=0)),
    ("rsync --server -F -F -C -r . d/", dict(filter_args=[("filter", ": /.rsync-filter"),
                                                         ("filter", "- .rsync-filter")])),
    (
        "rsync --server -r --exclude=*.o --include foo -f '- bar' --old-dirs . d/",
        dict(filter_args=[("exclude", "*.o"), ("include", "foo"), ("filter", "- bar"),
                          ("filter", "- /*/*")], recurse=1, xfer_dirs=1),
    ),
]


@pytest.mark.parametrize(("command", "expected"), CAPTURED, ids=[c for c, _ in CAPTURED])
def test_captured_command_lines(command: str, expected: dict[str, object]) -> None:
    opts = parse(command)
    actual = {name: getattr(opts, name) for name in expected}
    assert actual == expected


def test_derived_values_and_helpers() -> None:
    opts = parse("rsync --server -vlogDtpre.iLsfxCIvu --delete . d/")
    assert opts.delete_timing(29) == "before"
    assert opts.delete_timing(30) == "during"
    assert opts.server_allows_inc_recurse()
    assert not parse("rsync --server -re.LsfxCIvu . d/").server_allows_inc_recurse()
    assert not parse("rsync --server -re.iLs --delete-after . d/").server_allows_inc_recurse()
    assert parse("rsync --server --sender -re.iLs --delay-updates . s").server_allows_inc_recurse()
    mixed = parse("rsync --server -r --cc=MD5,xxhash . d/")
    assert (mixed.xfer_checksum_choice, mixed.file_checksum_choice) == ("md5", "xxh64")
    assert parse("rsync --server -r --cc=auto . d/").checksum_choice is None
    assert parse("rsync --server -r --zc=none -z . d/").do_compression == 0
    assert parse("rsync --server -r -zz . d/").compress_choice == "zlibx"
    notice = parse("rsync --server -r --write-batch=x . d/")
    assert notice.notices == ["ignoring --write-batch option sent to server"]


def test_unsupported_reason_names_the_option_as_rsync_would() -> None:
    assert parse("rsync --server -vlogDtpre.iLsfxCIvu . d/").unsupported_reason() is None
    opts = parse("rsync --server -logDtpAXrSe.iLsfxCIvu . d/")
    assert opts.unsupported_reason() is None  # -A and -X are supported now
    assert opts.unsupported_reason(["acls", "xattrs"]) == "The server does not support --acls (-A)"
    assert opts.unsupported_reason(["xattrs"]) == "The server does not support --xattrs (-X)"
    assert opts.unsupported_reason(["sparse", "acls"]) == "The server does not support --acls (-A)"
    assert parse("rsync --server -r --crtimes . d/").unsupported_reason() == (
        "The server does not support --crtimes (-N)"
    )
    assert parse("rsync --server -r --link-dest=x . d/").unsupported_reason() is None
    assert opts.unsupported_reason([]) is None


def test_secluded_args_are_parsed_on_top_of_the_command_line() -> None:
    buf = ReceiveBuffer()
    wire = b"rsync\0--delete\0--log-format=%i\0.\0dst dir/\0\0extra"
    for byte in wire[:-6]:  # everything but the terminator's last NUL and trailing bytes
        assert read_secluded_args(buf) is None
        buf.extend(bytes([byte]))
    assert read_secluded_args(buf) is None
    buf.extend(wire[-6:])
    secluded = read_secluded_args(buf)
    assert secluded == ["rsync", "--delete", "--log-format=%i", ".", "dst dir/"]
    assert buf.take_all() == b"extra"

    argv = ["--server", "-svlogDtpre.iLsfxCIvu"]
    first = parse_server_args(argv)
    assert first.needs_secluded_args and first.args == []
    opts = parse_server_args(argv, secluded=secluded)
    assert not opts.needs_secluded_args
    assert (opts.protect_args, opts.delete_mode, opts.verbose) == (2, 1, 1)
    assert opts.args == [".", "dst dir/"]
    assert opts.stdout_format_has_i == 1


def test_read_secluded_args_empty_list_and_limit() -> None:
    buf = ReceiveBuffer(b"\0rest")
    assert read_secluded_args(buf) == []
    assert buf.take_all() == b"rest"
    with pytest.raises(OptionError):
        read_secluded_args(ReceiveBuffer(b"x" * (2 << 20)))


def test_daemon_mode_uses_the_daemon_table() -> None:
    opts = parse("rsync --server --daemon .")
    assert (opts.daemon, opts.am_server, opts.args) == (1, 1, ["."])
    assert parse("rsync --server --daemon -M a=b .").dparams == ["a=b"]


# argv after "--server", each rejected by real rsync; ours must print the same line
REJECTED = [
    ["--bogus-opt", ".", "x"],
    ["-vlQ", ".", "x"],
    ["-v=3", ".", "x"],
    ["--verbose=3", ".", "x"],
    ["--delete=foo", ".", "x"],
    ["--timeout", ".", "x"],
    ["--timeout=abc", ".", "x"],
    ["--timeout=99999999999", ".", "x"],
    ["--checksum-seed=-5x", ".", "x"],
    ["--use-qsort", ".", "x"],
    [".", "x", "-e"],
    ["-Bfoo", ".", "x"],
    ["-B99999999", ".", "x"],
    ["--max-size=5x", ".", "x"],
    ["--min-size=1.5.5", ".", "x"],
    ["--bwlimit=100b", ".", "x"],
    ["--max-alloc=1k", ".", "x"],
    ["--suffix=a/b", ".", "x"],
    ["-b", "--suffix=", ".", "x"],
    ["-M", "foo", ".", "x"],
    ["--old-args", "-s", ".", "x"],
    ["--inplace", "--partial-dir=foo", ".", "x"],
    ["--append", "-W", ".", "x"],
    ["--delete-before", "--delete-after", "-r", ".", "x"],
    ["--delete", ".", "x"],
    ["--compress-choice=foo", ".", "x"],
    ["--checksum-choice=foo", ".", "x"],
    ["--cc=md5,foo", ".", "x"],
    ["--cc=foo,md5", ".", "x"],
    ["--stderr=x", ".", "x"],
    ["--stop-after=0", ".", "x"],
    ["--write-batch=x", "--read-batch=y", ".", "x"],
    ["--link-dest=a", "--copy-dest=b", ".", "x"],
    ["--usermap=a", "--usermap=b", ".", "x"],
    ["--chown=a", "--usermap=b", ".", "x"],
    ["--usermap=a", "--chown=b", ".", "x"],
    ["--files-from=host:foo", ".", "x"],
    ["--daemon", "--bogus", "."],
]

# argv after "--server" that real rsync accepts (it then fails reading the handshake)
ACCEPTED = [
    ["-B", ".", "x"],
    ["-B=2048", ".", "x"],
    ["--timeout=", ".", "x"],
    ["--timeout=0x10", ".", "x"],
    ["-@-1", ".", "x"],
    ["--no-v", "--no-acls", ".", "x"],
    ["--max-alloc=0", ".", "x"],
    ["--bwlimit=5", "--info=foo", ".", "x"],
    ["-vvvvvvvvv", "--zc=ZSTD", "--cc=XXH128", ".", "x"],
    ["-rlt", "--backup-dir=.", "--suffix=", "--sender", ".", "x"],
]


def run_real_server(argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
    assert RSYNC is not None
    proc = subprocess.run(
        [RSYNC, "--server", *argv], input=stdin, capture_output=True, timeout=30, check=False
    )
    first = proc.stderr.decode(errors="replace").splitlines(keepends=True)
    return proc.returncode, first[0] if first else ""


@needs_rsync
@pytest.mark.parametrize("argv", REJECTED, ids=[" ".join(a) for a in REJECTED])
def test_errors_match_real_rsync(argv: list[str]) -> None:
    code, line = run_real_server(argv)
    with pytest.raises(OptionError) as caught:
        parse_server_args(["--server", *argv])
    assert (caught.value.exit_code, caught.value.stderr_line) == (code, line)


@needs_rsync
@pytest.mark.parametrize("argv", ACCEPTED, ids=[" ".join(a) for a in ACCEPTED])
def test_accepted_by_real_rsync_and_by_us(argv: list[str]) -> None:
    code, line = run_real_server(argv)
    assert code == 12, line  # got past option parsing to the (empty) handshake
    parse_server_args(["--server", *argv])


@needs_rsync
def test_secluded_errors_match_real_rsync() -> None:
    for secluded in ([], ["rsync", "--bogus", ".", "x"], ["rsync", "--delete", ".", "x"]):
        wire = b"".join(a.encode() + b"\0" for a in secluded) + b"\0"
        code, line = run_real_server(["-s"], stdin=wire)
        first = parse_server_args(["--server", "-s"])
        assert first.needs_secluded_args
        with pytest.raises(OptionError) as caught:
            parse_server_args(["--server", "-s"], secluded=read_secluded_args(ReceiveBuffer(wire)))
        assert (caught.value.exit_code, caught.value.stderr_line) == (code, line)
