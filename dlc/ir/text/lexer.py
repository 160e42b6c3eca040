"""The lexer of the text form: characters to tokens, each with its line:col."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dlc.errors import ParseError
from dlc.ir.text.printer import IDENT, NAME

_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class Token:
    """kind: value (%x), global (@x), label (^x), ident, int, float, string, punct, eof."""
    kind: str
    text: str            # the source text, for messages
    value: Any           # the decoded name, number or string
    line: int
    col: int
    numbered: bool = False  # %N: a node number, distinct from the name %"N"

    def describe(self) -> str:
        return "end of input" if self.kind == "eof" else repr(self.text)


_SIGILS = {"%": "value", "@": "global", "^": "label"}
_PUNCT = set("(){}[],:=")
_NUMBER = re.compile(r"-?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+"
                     r"|inf(?![A-Za-z0-9_.])|[0-9]+)")
_DIGITS = re.compile(r"[0-9]+")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


class Lexer:
    def __init__(self, text: str, source: str | None):
        self.text, self.source = text, source
        self.pos, self.line, self.line_start = 0, 1, 0

    def error(self, message: str, pos: int | None = None) -> ParseError:
        pos = self.pos if pos is None else pos
        return ParseError(message, self.line, pos - self.line_start + 1, self.source)

    def tokens(self) -> list[Token]:
        out = []
        while True:
            self._skip_space()
            if self.pos >= len(self.text):
                out.append(self._token("eof", self.pos, None))
                return out
            out.append(self._next())

    def _skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\n":
                self.pos += 1
                self.line, self.line_start = self.line + 1, self.pos
            elif ch in " \t\r":
                self.pos += 1
            elif text.startswith("//", self.pos):  # a comment runs to the end of the line
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _token(self, kind: str, start: int, value: Any, numbered: bool = False) -> Token:
        return Token(kind, self.text[start:self.pos], value, self.line,
                     start - self.line_start + 1, numbered)

    def _next(self) -> Token:
        start, ch = self.pos, self.text[self.pos]
        if ch in _PUNCT:
            self.pos += 1
            return self._token("punct", start, ch)
        if ch in _SIGILS:
            return self._sigil(_SIGILS[ch])
        if ch == '"':
            return self._token("string", start, self._string())
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            is_int = _DIGITS.fullmatch(m.group().lstrip("-")) is not None
            value = int(m.group()) if is_int else float(m.group())
            return self._token("int" if is_int else "float", start, value)
        m = IDENT.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return self._token("ident", start, m.group())
        raise self.error(f"unexpected character {ch!r}")

    def _sigil(self, kind: str) -> Token:
        start = self.pos
        self.pos += 1
        if self.text.startswith('"', self.pos):
            name = self._string()
            if not name:
                raise self.error(f"empty name after {self.text[start]!r}", start)
            return self._token(kind, start, name)
        m = NAME.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected a name after {self.text[start]!r} (an identifier, a "
                             f"number or a quoted string)")
        self.pos = m.end()
        return self._token(kind, start, m.group(), numbered=m.group().isdigit())

    def _string(self) -> str:
        start, text = self.pos, self.text
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.error("unterminated string: expected a closing '\"' on this line "
                                 "(write a line break as \\n)", start)
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch != "\\":
                out.append(ch)
                self.pos += 1
                continue
            esc = text[self.pos + 1:self.pos + 2]
            if esc in _UNESCAPES:
                out.append(_UNESCAPES[esc])
                self.pos += 2
            elif esc == "u" and _HEX4.match(text, self.pos + 2):
                out.append(chr(int(text[self.pos + 2:self.pos + 6], 16)))
                self.pos += 6
            else:
                raise self.error(f"unknown escape '\\{esc}' in a string; use \\\\, \\\", \\n, "
                                 f"\\t, \\r or \\uXXXX")
