r"""Split and vet the command string an SSH client asks the server to execute.

sshd would hand the string to the user's shell. We never run a shell: we split the
string the way a POSIX shell splits words (quotes, backslashes, a leading ``~``) and
refuse anything a shell would have *acted on* -- ``;``, ``|``, ``&``, redirections,
sub-shells, ``$`` expansions, backquotes, comments. rsync clients escape all of those
in the arguments they send (3.2.4+ backslash-escapes shell characters; older clients
send plain words), so a legitimate rsync command never contains one unquoted, and an
injection attempt such as ``rsync --server ... ; rm -rf /`` is refused whole instead of
being half-executed.

Only rsync server commands pass: ``rsync --server ...`` where the program may also be a
path ending in ``rsync`` or ``rsyncd-py`` (``/usr/bin/rsync``, ``--rsync-path`` values).
Options between the program and ``--server`` are refused: they would let a client pick
the store or root, which is the operator's decision. What a client sends, captured from
rsync 3.2.7::

    push:  rsync --server -logDtpre.iLsfxCIvu . /dst
    pull:  rsync --server --sender -logDtpre.iLsfxCIvu . a\ b
    host::module over ssh:  rsync --server --daemon .

This module is pure (no I/O); `rsyncd_py.transports.ssh` decides what to do with the
result.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

__all__ = ["CommandRejected", "ServerCommand", "parse_exec_command", "split_shell_words"]

# Characters a shell gives meaning to when they appear unquoted outside a word's text.
_SHELL_OPERATORS = frozenset(";&|<>()`\n")
# Inside double quotes a shell still expands these.
_DOUBLE_QUOTE_EXPANSIONS = frozenset("$`")
# After a backslash inside double quotes, only these lose their special meaning.
_DOUBLE_QUOTE_ESCAPABLE = frozenset('$`"\\\n')
_BLANKS = frozenset(" \t")


class CommandRejected(ValueError):
    """The exec command is not an rsync server command; `reason` is for the server log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """An accepted rsync server command.

    `argv` starts at ``--server`` (the program name removed), which is the shape
    `rsyncd_py.session.run_server` takes.
    """

    program: str
    argv: tuple[str, ...]

    @property
    def is_sender(self) -> bool:
        """Whether the client pulls (the server sends)."""
        return "--sender" in self.argv

    @property
    def is_daemon(self) -> bool:
        """Whether the client asked for rsync daemon mode over ssh (``host::module``)."""
        return "--daemon" in self.argv


def parse_exec_command(command: str) -> ServerCommand:
    """Return the rsync server command in `command`, or raise `CommandRejected`."""
    words = split_shell_words(command)
    if not words:
        raise CommandRejected("empty command")
    program = posixpath.basename(words[0])
    if not (program.endswith("rsync") or program == "rsyncd-py"):
        raise CommandRejected(f"program {words[0]!r} is not rsync")
    if len(words) < 2 or words[1] != "--server":
        raise CommandRejected("not an rsync server command (no --server after the program)")
    return ServerCommand(program=words[0], argv=tuple(words[1:]))


def split_shell_words(command: str) -> list[str]:
    """Split `command` into words as a POSIX shell would, refusing shell syntax.

    Handles blanks, backslash escapes, single and double quotes, backslash-newline
    continuations and tilde expansion of a bare leading ``~`` or ``~/`` (the user's
    home, which on this server is the root of the served tree, so ``~/x`` becomes
    ``/x``). Raises `CommandRejected` for unbalanced quotes and for any operator,
    expansion or comment a shell would act on.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False  # a quoted empty string ('') still makes a word
    i, end = 0, len(command)
    while i < end:
        char = command[i]
        if char in _BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        elif char == "\\":
            if i + 1 == end:
                raise CommandRejected("command ends with a backslash")
            i += 1
            if command[i] != "\n":  # backslash-newline is a line continuation
                word.append(command[i])
                in_word = True
        elif char == "'":
            close = command.find("'", i + 1)
            if close < 0:
                raise CommandRejected("unterminated single quote")
            word.append(command[i + 1 : close])
            in_word, i = True, close
        elif char == '"':
            text, i = _double_quoted(command, i + 1)
            word.append(text)
            in_word = True
        elif char in _SHELL_OPERATORS or char == "$":
            raise CommandRejected(f"shell syntax {char!r} in command")
        elif char == "#" and not in_word:
            raise CommandRejected("shell comment in command")
        elif char == "~" and not in_word and _ends_tilde_prefix(command, i + 1):
            word.append("/")  # "~" -> "/", "~/x" -> "/" + "x" (the "/" after ~ is skipped)
            in_word = True
            if command.startswith("/", i + 1):
                i += 1
        else:
            word.append(char)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(command: str, start: int) -> tuple[str, int]:
    """Return the text of a double-quoted string opening before `start` and its end index."""
    text: list[str] = []
    i = start
    while i < len(command):
        char = command[i]
        if char == '"':
            return "".join(text), i
        if char in _DOUBLE_QUOTE_EXPANSIONS:
            raise CommandRejected(f"shell expansion {char!r} in command")
        if char == "\\" and i + 1 < len(command) and command[i + 1] in _DOUBLE_QUOTE_ESCAPABLE:
            i += 1
            if command[i] != "\n":
                text.append(command[i])
        else:
            text.append(char)
        i += 1
    raise CommandRejected("unterminated double quote")


def _ends_tilde_prefix(command: str, after: int) -> bool:
    """Whether the ``~`` just before `after` is a bare home reference (``~``, ``~/...``)."""
    return after == len(command) or command[after] in _BLANKS or command[after] == "/"
