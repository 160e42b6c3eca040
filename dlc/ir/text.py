"""The text form of the IR: `print_graph` and `parse_graph` (grammar in docs/ir-grammar.md).

Printing is canonical: node values are numbered %0, %1, ... in node order, every attribute is
printed in its op's order, floats print so they read back to the identical float. Hence
`str(parse(str(g))) == str(g)`. The parser is a lexer plus a recursive-descent parser; it
rebuilds every node through the op table, re-derives its type with the op's rule, and turns
any disagreement or malformed input into a ParseError at the offending line:col.
"""
from __future__ import annotations

import difflib
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dlc.errors import DlcError, ParseError, VerifyError
from dlc.ir.graph import ROLES, Graph, Input, Node, Value
from dlc.ir.types import LONG, SHORT, TensorType
from dlc.ir.verify import verify

# graph.meta[META_KEY] is a dict of simple values (numbers, strings, bools, none, lists,
# dicts) that passes may fill; it prints as the header's `attributes {...}` and parses back.
# Nothing else in graph.meta is printed.
META_KEY = "attributes"

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
NAME = re.compile(r"[A-Za-z0-9_.]+")  # after a sigil: %0.weight is a name, %0 a node number
_LOC = re.compile(r"(.*):(0|[1-9][0-9]*)", re.DOTALL)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_HIDDEN = ("Cc", "Cs", "Zl", "Zp")  # control, surrogate and line-break characters
_WIDTH = 100  # a header longer than this prints one argument per line


# -- printing ---------------------------------------------------------------------------------
def quote(text: str) -> str:
    """A double-quoted string literal that the lexer reads back to exactly `text`."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in _HIDDEN:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def symbol(name: str) -> str:
    """A name as it follows a sigil (%, @, ^): bare when made of letters, digits, '_' and
    '.' but not all digits, else quoted. Quoting keeps an input named "0" (`%"0"`) apart
    from the node value `%0`."""
    return name if NAME.fullmatch(name) and not name.isdigit() else quote(name)


def value_names(graph: Graph) -> dict[Value, str]:
    """The printed name of every value of `graph`: `%name` for inputs, `%N` for nodes."""
    names: dict[Value, str] = {v: "%" + symbol(v.name) for v in graph.inputs}
    names.update({n: f"%{i}" for i, n in enumerate(graph.nodes)})
    return names


def format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))  # repr is the shortest text that reads back to the same float


def _format_key(key: Any) -> str:
    if isinstance(key, str):
        return key if IDENT.fullmatch(key) else quote(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return str(int(key))
    raise TypeError(f"cannot print attribute key {key!r}: keys are strings or ints")


def _format_seq(values) -> str:
    return "[" + ", ".join(format_attr(v) for v in values) + "]"


def _format_dict(values: dict) -> str:
    return "{" + ", ".join(f"{_format_key(k)} = {format_attr(v)}"
                           for k, v in values.items()) + "}"


# Checked in order: bool before int, since bool is an int in Python.
_FORMATTERS: list[tuple[type | tuple, Callable[[Any], str]]] = [
    (type(None), lambda v: "none"),
    ((bool, np.bool_), lambda v: "true" if v else "false"),
    ((int, np.integer), lambda v: str(int(v))),
    ((float, np.floating), format_float),
    (str, quote),
    ((list, tuple), _format_seq),
    (dict, _format_dict),
]


def format_attr(value: Any) -> str:
    """An attribute value in the text form (dtype attributes go through `_node_attrs`)."""
    for types, fmt in _FORMATTERS:
        if isinstance(value, types):
            return fmt(value)
    raise TypeError(f"cannot print attribute value {value!r} of type {type(value).__name__}; "
                    f"use numbers, strings, bools, none, lists or dicts")


def _node_attrs(node: Node) -> str:
    schema = node.op.attr_map
    order = [a.name for a in node.op.attrs if a.name in node.attrs]
    order += [k for k in node.attrs if k not in schema]  # only in graphs verify rejects
    parts = []
    for k in order:
        value = node.attrs[k]
        is_dtype = k in schema and schema[k].kind == "dtype" and value in SHORT
        parts.append(f"{_format_key(k)} = {SHORT[value] if is_dtype else format_attr(value)}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def _format_loc(loc: str) -> str:
    m = _LOC.fullmatch(loc)
    return f"loc({quote(m.group(1))}:{m.group(2)})" if m else f"loc({quote(loc)})"


def _ref(names: dict[Value, str], v: Value) -> str:
    # A value from outside the graph (a graph verify rejects) still prints, unparseably.
    return names.get(v) or "%" + quote(f"<not in this graph: {v.type}>")


def _arg(v: Input, always_role: bool) -> str:
    role = f" {v.role}" if always_role or v.role != "input" else ""
    return f"%{symbol(v.name)}: {v.type}{role}"


def _args(head: str, args: list[str], tail: str, indent: str) -> list[str]:
    one_line = head + "(" + ", ".join(args) + ")" + tail
    if len(indent) + len(one_line) <= _WIDTH or not args:
        return [indent + one_line]
    inner = [f"{indent}    {a}," for a in args]
    inner[-1] = inner[-1][:-1]
    return [indent + head + "("] + inner + [indent + ")" + tail]


def _meta_attrs(graph: Graph) -> str:
    attrs = graph.meta.get(META_KEY)
    return f" attributes {_format_dict(attrs)}" if attrs else ""


def _outputs(graph: Graph, names: dict[Value, str]) -> str:
    text = ", ".join(_ref(names, v) for v in graph.outputs)
    if graph.aliases:
        pairs = ", ".join(f"{i} = %{symbol(name)}" for i, name in sorted(graph.aliases.items()))
        text += f" {{aliases = {{{pairs}}}}}"
    return text


def _node_lines(node: Node, index: int, names: dict[Value, str], indent: str) -> list[str]:
    operands = ", ".join(_ref(names, v) for v in node.inputs)
    line = f"{indent}%{index}: {node.type} = {node.op.name}({operands}){_node_attrs(node)}"
    if node.loc is not None:
        line += " " + _format_loc(node.loc)
    if node.scope is not None:
        line += f" scope({quote(node.scope)})"
    if node.body is None:
        return [line]
    return [line + " {"] + _body_lines(node.body, indent + "  ") + [indent + "}"]


def _statements(graph: Graph, indent: str) -> tuple[list[str], dict[Value, str]]:
    names = value_names(graph)
    lines = []
    for i, node in enumerate(graph.nodes):
        lines += _node_lines(node, i, names, indent)
    return lines, names


def _body_lines(body: Graph, indent: str) -> list[str]:
    args = [_arg(v, always_role=False) for v in body.inputs]
    lines = _args(f"^{symbol(body.name)}", args, _meta_attrs(body) + ":", indent)
    statements, names = _statements(body, indent + "  ")
    return lines + statements + [f"{indent}  yield {_outputs(body, names)}".rstrip()]


def print_graph(graph: Graph) -> str:
    """The graph in the text form (no trailing newline). Parameter data is not printed."""
    args = [_arg(v, always_role=True) for v in graph.inputs]
    lines = _args(f"graph @{symbol(graph.name)}", args, _meta_attrs(graph) + " {", "")
    statements, names = _statements(graph, "  ")
    ret = f"  return {_outputs(graph, names)}".rstrip()  # a graph may return nothing
    return "\n".join(lines + statements + [ret, "}"])


# -- lexing -----------------------------------------------------------------------------------
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


class _Lexer:
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


# -- parsing ----------------------------------------------------------------------------------
@dataclass
class _Lit:
    """An attribute value as written: kind is int, float, bool, str, none, ident, list, dict
    or value; lists hold _Lits, dicts hold (key, key token, _Lit) triples."""
    kind: str
    value: Any
    tok: Token

    def describe(self) -> str:
        if self.kind in ("list", "dict"):
            return f"a {self.kind} ({self.tok.describe()} at {self.tok.line}:{self.tok.col})"
        return f"{_LIT_NAMES.get(self.kind, self.kind)} {self.tok.text}"


_LIT_NAMES = {"str": "string", "ident": "identifier", "value": "value"}


_WORDS = {"true": ("bool", True), "false": ("bool", False), "none": ("none", None),
          "inf": ("float", math.inf), "nan": ("float", math.nan)}
_KIND_WANTED = {"int": "an int", "float": "a float", "bool": "true or false",
                "str": "a quoted string", "ints": "a list of ints like [0, 1]",
                "floats": "a list of floats like [0.5, 1.0]",
                "dtype": "a dtype (" + ", ".join(SHORT.values()) + ")"}


class _KindError(Exception):
    """An attribute literal of the wrong kind; `lit` is the offending (sub)literal."""

    def __init__(self, lit: _Lit):
        self.lit = lit


def _read_list(lit: _Lit, item: Callable[[_Lit], Any]) -> tuple:
    if lit.kind != "list":
        raise _KindError(lit)
    return tuple(item(x) for x in lit.value)


def _read_scalar(*kinds: str) -> Callable[[_Lit], Any]:
    def read(lit: _Lit) -> Any:
        if lit.kind not in kinds:
            raise _KindError(lit)
        return lit.value
    return read


def _read_float(lit: _Lit) -> float:
    return float(_read_scalar("int", "float")(lit))  # an int is a fine way to write 1.0


def _read_dtype(lit: _Lit) -> str:
    if lit.kind != "ident" or lit.value not in LONG:
        raise _KindError(lit)
    return LONG[lit.value]


# How each attribute kind of the op table is read from a literal.
_READERS: dict[str, Callable[[_Lit], Any]] = {
    "int": _read_scalar("int"),
    "float": _read_float,
    "bool": _read_scalar("bool"),
    "str": _read_scalar("str"),
    "ints": lambda lit: _read_list(lit, _read_scalar("int")),
    "floats": lambda lit: _read_list(lit, _read_float),
    "dtype": _read_dtype,
}


class _Scope:
    """The values visible in one graph or fused body, keyed apart for %N and %name."""

    def __init__(self, what: str, source: str | None):
        self.what, self.source = what, source
        self.values: dict[tuple[bool, Any], tuple[Value, Token]] = {}

    def define(self, tok: Token, value: Value) -> None:
        key = _key(tok)
        if key in self.values:
            first = self.values[key][1]
            raise _error(tok, self.source, f"{tok.text} is already defined at "
                                           f"{first.line}:{first.col}; each value is defined once")
        self.values[key] = (value, tok)

    def lookup(self, tok: Token) -> Value:
        found = self.values.get(_key(tok))
        if found is None:
            raise _error(tok, self.source, f"unknown value {tok.text}: no value of that name is "
                                           f"defined above this use in {self.what}")
        return found[0]


def _key(tok: Token) -> tuple[bool, Any]:
    return (True, int(tok.value)) if tok.numbered else (False, tok.value)  # %07 is %7


def _error(tok: Token, source: str | None, message: str) -> ParseError:
    return ParseError(message, tok.line, tok.col, source)


class _Parser:
    def __init__(self, tokens: list[Token], source: str | None):
        self.toks, self.i, self.source = tokens, 0, source

    # -- token helpers ------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def advance(self) -> Token:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def at(self, text: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind in ("punct", "ident") and tok.value == text

    def fail(self, tok: Token, message: str) -> ParseError:
        return ParseError(message, tok.line, tok.col, self.source)

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            raise self.fail(self.peek(), f"expected '{text}' {context}, "
                                         f"got {self.peek().describe()}")
        return self.advance()

    def expect_kind(self, kind: str, wanted: str) -> Token:
        if self.peek().kind != kind:
            raise self.fail(self.peek(), f"expected {wanted}, got {self.peek().describe()}")
        return self.advance()

    # -- graph ----------------------------------------------------------------------------------
    def graph(self) -> Graph:
        self.expect("graph", "at the start of the text")
        name = self.expect_kind("global", "a graph name like @main").value
        scope = _Scope(f"graph @{name}", self.source)
        inputs = self.arguments(scope, role_required=True)
        meta = self.meta()
        open_tok = self.expect("{", "to open the graph's statements")
        nodes = self.statements(scope, "return")
        ret = self.expect("return", "after the nodes")
        outputs = self.results(scope)
        aliases = self.aliases(scope, outputs) if self.at("{") else {}
        self.close(open_tok, f"graph @{name}")
        if self.peek().kind != "eof":
            raise self.fail(self.peek(), f"expected end of input after the graph, got "
                                         f"{self.peek().describe()}")
        graph = Graph(inputs, nodes, outputs, name, aliases, meta)
        try:
            verify(graph)
        except VerifyError as e:  # the parser checks these rules itself; this is a backstop
            raise self.fail(ret, str(e)) from None
        return graph

    def close(self, open_tok: Token, what: str) -> None:
        self.expect("}", f"to close {what} (opened at {open_tok.line}:{open_tok.col})")

    def arguments(self, scope: _Scope, role_required: bool) -> list[Input]:
        self.expect("(", "to open the argument list")
        inputs: list[Input] = []
        while not self.at(")"):
            if inputs:
                self.expect(",", "between arguments")
            tok = self.expect_kind("value", "an argument like %x: f32[2,3] input")
            if tok.numbered:
                raise self.fail(tok, f"argument {tok.text} has a number for a name; numbers "
                                     f"name node values; quote it as %\"{tok.value}\"")
            self.expect(":", f"after {tok.text}")
            v = Input(tok.value, self.type(), self.role(role_required))
            scope.define(tok, v)
            inputs.append(v)
        self.advance()
        return inputs

    def role(self, required: bool) -> str:
        tok = self.peek()
        if tok.kind == "ident" and tok.value in ROLES:
            return self.advance().value
        if required or not (self.at(",") or self.at(")")):
            raise self.fail(tok, f"expected a role ({', '.join(ROLES)}) after the type, "
                                 f"got {tok.describe()}")
        return "input"

    def meta(self) -> dict:
        if not self.at("attributes"):
            return {}
        self.advance()
        lit = self.literal()
        if lit.kind != "dict":
            raise self.fail(lit.tok, f"expected {{name = value, ...}} after 'attributes', got "
                                     f"{lit.describe()}")
        return {META_KEY: self.plain(lit)}

    def type(self) -> TensorType:
        tok = self.peek()
        if tok.kind != "ident" or tok.value not in LONG:
            raise self.fail(tok, f"expected a type like f32[2,3] (dtypes: "
                                 f"{', '.join(SHORT.values())}), got {tok.describe()}")
        self.advance()
        self.expect("[", f"after the dtype {tok.value} (a scalar is {tok.value}[])")
        dims = []
        while not self.at("]"):
            if dims:
                self.expect(",", "between dimensions")
            dim = self.peek()
            if dim.kind != "int" or dim.value < 0:
                raise self.fail(dim, f"expected a dimension (an integer >= 0) or ']', got "
                                     f"{dim.describe()}")
            dims.append(self.advance().value)
        self.advance()
        return TensorType(tuple(dims), LONG[tok.value])

    def statements(self, scope: _Scope, end: str) -> list[Node]:
        nodes: list[Node] = []
        while not self.at(end):
            if self.peek().kind != "value":
                raise self.fail(self.peek(), f"expected a node (%N: type = op(...)) or "
                                             f"'{end}', got {self.peek().describe()}")
            nodes.append(self.node(scope))
        return nodes

    def results(self, scope: _Scope) -> list[Value]:
        values = []
        if self.peek().kind == "value":
            values.append(scope.lookup(self.advance()))
            while self.at(","):
                self.advance()
                values.append(scope.lookup(self.expect_kind("value", "a value after ','")))
        return values

    def aliases(self, scope: _Scope, outputs: list[Value]) -> dict[int, str]:
        out: dict[int, str] = {}
        for key, key_tok, lit in self.entries():
            if key != "aliases" or lit.kind != "dict":
                raise self.fail(key_tok, "expected {aliases = {INDEX = %input, ...}} after "
                                         "the returned values")
            for index, index_tok, target in lit.value:
                if self.alias_index(index, index_tok, outputs) in out:
                    raise self.fail(index_tok, f"output {index} is given two aliases")
                out[index] = self.alias_target(scope, index, target, outputs)
        return out

    def alias_index(self, index: Any, tok: Token, outputs: list[Value]) -> int:
        if tok.kind != "int" or not 0 <= index < len(outputs):
            raise self.fail(tok, f"an alias key is the index of a returned value, 0.."
                                 f"{len(outputs) - 1}; got {tok.describe()}")
        return index

    def alias_target(self, scope: _Scope, index: int, lit: _Lit, outputs) -> str:
        if lit.kind != "value":
            raise self.fail(lit.tok, f"expected the %name of the input that output {index} "
                                     f"updates, got {lit.describe()}")
        target = scope.lookup(lit.tok)
        if not isinstance(target, Input) or target.role not in ("param", "state"):
            what = f"an input of role {target.role}" if isinstance(target, Input) \
                else "a node value"
            raise self.fail(lit.tok, f"output {index} aliases {lit.tok.text}, {what}; only "
                                     f"param and state inputs can be updated in place")
        if target.type != outputs[index].type:
            raise self.fail(lit.tok, f"output {index} has type {outputs[index].type} but "
                                     f"aliases {lit.tok.text} of type {target.type}")
        return target.name

    # -- nodes ----------------------------------------------------------------------------------
    def node(self, scope: _Scope) -> Node:
        result = self.advance()
        self.expect(":", f"after {result.text}")
        type_tok = self.peek()
        recorded = self.type()
        self.expect("=", f"after the type of {result.text}")
        op_tok = self.expect_kind("ident", "an op name")
        op = self.op(op_tok)
        self.expect("(", f"after the op name {op.name}")
        operands = self.operands(scope)
        attrs_tok = self.peek()
        written = self.entries() if self.at("{") and self.peek(1).kind != "label" else []
        loc = self.loc() if self.at("loc") else None
        layer = self.scope_text() if self.at("scope") else None
        body = self.region(result, op_tok, operands) if self.at("{") else None
        types = [v.type for _, v in operands]
        attrs = self.attrs(op, written, types, attrs_tok if written else op_tok, body)
        inferred = body.outputs[0].type if body is not None else self.infer(op, op_tok, types,
                                                                           attrs)
        if inferred != recorded:
            source = "its body yields" if body is not None else f"the {op.name} rule gives"
            raise self.fail(type_tok, f"{result.text} is recorded as {recorded} but {source} "
                                      f"{inferred} (inputs: {_types(types)})")
        node = Node(op, tuple(v for _, v in operands), attrs, recorded, loc, layer, body)
        scope.define(result, node)
        return node

    def op(self, tok: Token):
        from dlc.ops import OPS
        op = OPS.get(tok.value)
        if op is None:
            close = difflib.get_close_matches(tok.value, list(OPS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise self.fail(tok, f"unknown op {tok.value!r} (see docs/ops.md){hint}")
        return op

    def operands(self, scope: _Scope) -> list[tuple[Token, Value]]:
        out = []
        while not self.at(")"):
            if out:
                self.expect(",", "between operands")
            tok = self.expect_kind("value", "an operand like %0 or ')'")
            out.append((tok, scope.lookup(tok)))
        self.advance()
        return out

    def attrs(self, op, written, types, tok: Token, body: Graph | None) -> dict:
        attrs: dict[str, Any] = {}
        extra: dict[str, Any] = {}  # a node with a body may carry attributes of its own
        for key, key_tok, lit in written:
            attr = op.attr_map.get(key) if isinstance(key, str) else None
            if key in attrs or key in extra:
                raise self.fail(key_tok, f"attribute {key} is given twice")
            if attr is None and body is not None and isinstance(key, str):
                extra[key] = self.plain(lit, sequence=tuple)
            elif attr is None:
                names = ", ".join(a.name for a in op.attrs)
                known = f"its attributes: {names}" if names else "it takes no attributes"
                raise self.fail(key_tok, f"{op.name} has no attribute {key_tok.text}; {known}")
            else:
                attrs[key] = self.attr_value(op, attr, lit)
        try:
            op.check_arity(len(types))
            return {**op.canonical_attrs(types, attrs), **extra}
        except Exception as e:  # any rule failure on hand-edited text is a ParseError
            raise self.fail(tok, _rule_message(op, e, types)) from e

    def attr_value(self, op, attr, lit: _Lit) -> Any:
        if lit.kind == "none" and attr.default is None:
            return None
        try:
            return _READERS[attr.kind](lit)
        except _KindError as e:
            raise self.fail(e.lit.tok, f"attribute {attr.name} of {op.name} expects "
                                       f"{_KIND_WANTED[attr.kind]}, got {e.lit.describe()}")

    def infer(self, op, tok: Token, types: list[TensorType], attrs: dict) -> TensorType:
        try:
            return op.infer(types, attrs)
        except Exception as e:  # any rule failure on hand-edited text is a ParseError
            raise self.fail(tok, _rule_message(op, e, types)) from e

    def loc(self) -> str:
        self.advance()
        self.expect("(", "after loc")
        file = self.expect_kind("string", 'a quoted file name, as in loc("model.py":12)')
        text = file.value
        if self.at(":"):
            self.advance()
            line = self.expect_kind("int", "a line number after ':'")
            text += f":{line.value}"
        self.expect(")", "to close loc(...)")
        return text

    def scope_text(self) -> str:
        self.advance()
        self.expect("(", "after scope")
        text = self.expect_kind("string", 'a quoted layer path, as in scope("fc1 (Linear)")')
        self.expect(")", "to close scope(...)")
        return text.value

    def region(self, result: Token, op_tok: Token,
               operands: list[tuple[Token, Value]]) -> Graph:
        open_tok = self.advance()
        label = self.expect_kind("label", "a block label like ^bb( after '{'")
        scope = _Scope(f"the body at {open_tok.line}:{open_tok.col} (a body sees only its "
                       f"block arguments)", self.source)
        inputs = self.arguments(scope, role_required=False)
        if len(inputs) != len(operands):
            raise self.fail(label, f"the body takes {len(inputs)} arguments but "
                                   f"{op_tok.value} has {len(operands)} operands")
        for (tok, v), arg in zip(operands, inputs):
            if v.type != arg.type:
                raise self.fail(tok, f"operand {tok.text} has type {v.type} but its block "
                                     f"argument %{symbol(arg.name)} has type {arg.type}")
        meta = self.meta()
        self.expect(":", "after the block arguments")
        nodes = self.statements(scope, "yield")
        yield_tok = self.advance()
        outputs = self.results(scope)
        aliases = self.aliases(scope, outputs) if self.at("{") else {}
        if len(outputs) != 1:
            raise self.fail(yield_tok, f"a body yields exactly one value, got {len(outputs)}")
        self.close(open_tok, f"the body of {result.text} ({op_tok.value})")
        return Graph(inputs, nodes, outputs, label.value, aliases, meta)

    # -- attribute literals -----------------------------------------------------------------
    def entries(self) -> list[tuple[Any, Token, _Lit]]:
        open_tok = self.advance()
        out = []
        while not self.at("}"):
            if out:
                self.expect(",", "between attributes")
            key_tok = self.peek()
            if key_tok.kind not in ("ident", "string", "int"):
                raise self.fail(key_tok, f"expected an attribute name or '}}' (opened at "
                                         f"{open_tok.line}:{open_tok.col}), got "
                                         f"{key_tok.describe()}")
            self.advance()
            self.expect("=", f"after the attribute name {key_tok.text}")
            out.append((key_tok.value, key_tok, self.literal()))
        self.advance()
        return out

    def literal(self) -> _Lit:
        tok = self.peek()
        if tok.kind in ("int", "float"):
            return _Lit(tok.kind, self.advance().value, tok)
        if tok.kind == "string":
            return _Lit("str", self.advance().value, tok)
        if tok.kind == "value":
            return _Lit("value", self.advance().value, tok)
        if tok.kind == "ident":
            kind, value = _WORDS.get(tok.value, ("ident", tok.value))
            self.advance()
            return _Lit(kind, value, tok)
        if self.at("["):
            return _Lit("list", self.list_items(), tok)
        if self.at("{"):
            return _Lit("dict", self.entries(), tok)
        raise self.fail(tok, f"expected an attribute value (a number, string, true/false, "
                             f"none, dtype, [list] or {{dict}}), got {tok.describe()}")

    def list_items(self) -> list[_Lit]:
        self.advance()
        items = []
        while not self.at("]"):
            if items:
                self.expect(",", "between list items")
            items.append(self.literal())
        self.advance()
        return items

    def plain(self, lit: _Lit, sequence: type = list) -> Any:
        """A literal as a plain Python value; lists become `sequence`s."""
        if lit.kind == "list":
            return sequence(self.plain(x, sequence) for x in lit.value)
        if lit.kind == "dict":
            return {k: self.plain(v, sequence) for k, _, v in lit.value}
        if lit.kind in ("ident", "value"):
            raise self.fail(lit.tok, f"expected a number, string, true/false, none, list or "
                                     f"dict, got {lit.describe()}")
        return lit.value


def _types(types: list[TensorType]) -> str:
    return ", ".join(str(t) for t in types) or "none"


def _rule_message(op, error: Exception, types: list[TensorType]) -> str:
    """An op rule's complaint, prefixed by the op's name once, with the input types.

    Anything but a DlcError is a rule that choked on its input: it is still reported at the
    node's line:col, with the exception type to make the rule's bug findable."""
    text = str(error) if isinstance(error, DlcError) else \
        f"the op's rule failed ({type(error).__name__}: {error})"
    if not text.startswith(f"{op.name}:"):
        text = f"{op.name}: {text}"
    return f"{text} (inputs: {_types(types)})"


def parse_graph(text: str, source: str | None = None) -> Graph:
    """Parse the text form into a verified Graph; param/state/const inputs get data None.

    Raises ParseError(message, line, col) on malformed text, unknown ops or values, wrong
    attribute kinds, or a recorded type that disagrees with the op's rule."""
    return _Parser(_Lexer(text, source).tokens(), source).graph()
