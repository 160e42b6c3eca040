"""The parser of the text form: a recursive-descent parser over the lexer's tokens.

It rebuilds every node through the op table, re-derives its type with the op's rule, and
turns any disagreement or malformed input into a ParseError at the offending line:col. The
parsed graph carries a SourceMap (graph.meta["source_map"]) so that `dlc.verify` can cite the
line:col of a node, of its offset or of the memory clause.
"""
from __future__ import annotations

import difflib
from typing import Any

from dlc.errors import DlcError, ParseError, VerifyError
from dlc.ir.graph import ROLES, Graph, Input, Node, Value
from dlc.ir.text.lexer import Lexer, Token
from dlc.ir.text.literals import KIND_WANTED, READERS, WORDS, KindError, Lit
from dlc.ir.text.plan_text import build_plan, read_memory_clause
from dlc.ir.text.printer import META_KEY, PLAN_KEY, symbol
from dlc.ir.types import LONG, SHORT, TensorType
from dlc.ir.verify import SOURCE_KEY, SourceMap, verify

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

    def get(self, tok: Token) -> Value | None:
        found = self.values.get(_key(tok))
        return None if found is None else found[0]


def _key(tok: Token) -> tuple[bool, Any]:
    return (True, int(tok.value)) if tok.numbered else (False, tok.value)  # %07 is %7


def _error(tok: Token, source: str | None, message: str) -> ParseError:
    return ParseError(message, tok.line, tok.col, source)


class _Parser:
    def __init__(self, tokens: list[Token], source: str | None):
        self.toks, self.i, self.source = tokens, 0, source
        self.maps: list[SourceMap] = []  # one per graph or body being read: node positions
        # offset(N) (or `view`: None) of top-level nodes
        self.offsets: dict[Node, tuple[int | None, Token]] = {}

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

    def lookup(self, scope: _Scope, tok: Token) -> Value:
        value = scope.get(tok)
        if value is not None:
            return value
        later = self.later_definition(tok)
        if later is not None:
            raise self.fail(tok, f"unknown value {tok.text}: it is defined only later, at "
                                 f"{later.line}:{later.col} (rule: every value is defined "
                                 f"before its first use; a use above its definition is a "
                                 f"cycle or an out-of-order node)")
        raise self.fail(tok, f"unknown value {tok.text}: no value of that name is defined "
                             f"above this use in {scope.what} (a dangling value)")

    def later_definition(self, tok: Token) -> Token | None:
        """The definition (`%name:`) of `tok`'s name further on in the same graph or body."""
        depth = 0
        for k in range(self.i, len(self.toks) - 1):
            t = self.toks[k]
            if t.kind == "punct" and t.value in "{}":
                depth += 1 if t.value == "{" else -1
                if depth < 0:
                    return None
            elif (depth == 0 and t.kind == "value" and _key(t) == _key(tok)
                  and self.toks[k + 1].kind == "punct" and self.toks[k + 1].value == ":"):
                return t
        return None

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
        clause = read_memory_clause(self, scope) if self.at("memory") else None
        open_tok = self.expect("{", "to open the graph's statements")
        self.maps.append(SourceMap(self.source))
        nodes = self.statements(scope, "return")
        ret = self.expect("return", "after the nodes")
        outputs = self.results(scope)
        aliases = self.aliases(scope, outputs) if self.at("{") else {}
        self.close(open_tok, f"graph @{name}")
        if self.peek().kind != "eof":
            raise self.fail(self.peek(), f"expected end of input after the graph, got "
                                         f"{self.peek().describe()}")
        smap = self.maps.pop()
        meta[SOURCE_KEY] = smap
        plan = build_plan(self, clause, nodes, smap)
        if plan is not None:
            meta[PLAN_KEY] = plan
        graph = Graph(inputs, nodes, outputs, name, aliases, meta)
        try:
            verify(graph)
        except VerifyError as e:  # fused kinds and the plan are checked here; the rest is
            line = getattr(e, "line", None)  # checked by the parser, this is a backstop
            if line is not None:
                raise ParseError(e.detail, line, e.col, self.source) from None
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
            values.append(self.lookup(scope, self.advance()))
            while self.at(","):
                self.advance()
                values.append(self.lookup(scope, self.expect_kind("value", "a value after ','")))
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

    def alias_target(self, scope: _Scope, index: int, lit: Lit, outputs) -> str:
        if lit.kind != "value":
            raise self.fail(lit.tok, f"expected the %name of the input that output {index} "
                                     f"updates, got {lit.describe()}")
        target = self.lookup(scope, lit.tok)
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
        offset = self.offset() if self.at("offset") or self.at("view") else None
        loc = self.loc() if self.at("loc") else None
        layer = self.scope_text() if self.at("scope") else None
        body = self.region(result, op_tok, operands) if self.at("{") else None
        types = [v.type for _, v in operands]
        attrs = self.attrs(op, written, types, attrs_tok if written else op_tok, body)
        values = tuple(v for _, v in operands)
        inferred = body.outputs[0].type if body is not None else self.infer(op, op_tok, values,
                                                                           attrs)
        if inferred != recorded:
            source = "its body yields" if body is not None else f"the {op.name} rule gives"
            raise self.fail(type_tok, f"{result.text} is recorded as {recorded} but {source} "
                                      f"{inferred} (inputs: {_types(types)})")
        node = Node(op, values, attrs, recorded, loc, layer, body)
        scope.define(result, node)
        self.maps[-1].nodes[node] = (result.line, result.col)
        self.maps[-1].names[node] = result.text
        if offset is not None:
            self.offsets[node] = offset
            self.maps[-1].offsets[node] = (offset[1].line, offset[1].col)
        return node

    def offset(self) -> tuple[int | None, Token]:
        """`offset(N)`: the value's bytes in the arena; `view`: none, it is read through
        (offset None)."""
        tok = self.advance()
        if len(self.maps) > 1:
            what = "view" if tok.text == "view" else "offset(...)"
            raise self.fail(tok, f"{what} inside a fused body: only top-level values live "
                                 "in the arena (a body's values stay inside its kernel)")
        if tok.text == "view":
            return None, tok
        self.expect("(", "after offset")
        value = self.expect_kind("int", "a byte offset, as in offset(4096)")
        if value.value < 0:
            raise self.fail(value, f"a byte offset is >= 0, got {value.value}")
        self.expect(")", "to close offset(...)")
        return value.value, tok

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
            out.append((tok, self.lookup(scope, tok)))
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

    def attr_value(self, op, attr, lit: Lit) -> Any:
        if lit.kind == "none" and attr.default is None:
            return None
        try:
            return READERS[attr.kind](lit)
        except KindError as e:
            raise self.fail(e.lit.tok, f"attribute {attr.name} of {op.name} expects "
                                       f"{KIND_WANTED[attr.kind]}, got {e.lit.describe()}")

    def infer(self, op, tok: Token, values: tuple[Value, ...], attrs: dict) -> TensorType:
        try:
            return op.infer_for(values, attrs)
        except Exception as e:  # any rule failure on hand-edited text is a ParseError
            raise self.fail(tok, _rule_message(op, e, [v.type for v in values])) from e

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
        if self.at("memory"):
            raise self.fail(self.peek(), "a memory plan belongs to the top-level graph, not to "
                                         "a fused body")
        self.expect(":", "after the block arguments")
        self.maps.append(SourceMap(self.source))
        nodes = self.statements(scope, "yield")
        yield_tok = self.advance()
        outputs = self.results(scope)
        aliases = self.aliases(scope, outputs) if self.at("{") else {}
        if not outputs:
            raise self.fail(yield_tok, "a body yields at least one value (yield %a, %b, ...)")
        self.close(open_tok, f"the body of {result.text} ({op_tok.value})")
        meta[SOURCE_KEY] = self.maps.pop()
        return Graph(inputs, nodes, outputs, label.value, aliases, meta)

    # -- attribute literals -----------------------------------------------------------------
    def entries(self) -> list[tuple[Any, Token, Lit]]:
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

    def literal(self) -> Lit:
        tok = self.peek()
        if tok.kind in ("int", "float"):
            return Lit(tok.kind, self.advance().value, tok)
        if tok.kind == "string":
            return Lit("str", self.advance().value, tok)
        if tok.kind == "value":
            return Lit("value", self.advance().value, tok)
        if tok.kind == "ident":
            kind, value = WORDS.get(tok.value, ("ident", tok.value))
            self.advance()
            return Lit(kind, value, tok)
        if self.at("["):
            return Lit("list", self.list_items(), tok)
        if self.at("{"):
            return Lit("dict", self.entries(), tok)
        raise self.fail(tok, f"expected an attribute value (a number, string, true/false, "
                             f"none, dtype, [list] or {{dict}}), got {tok.describe()}")

    def list_items(self) -> list[Lit]:
        self.advance()
        items = []
        while not self.at("]"):
            if items:
                self.expect(",", "between list items")
            items.append(self.literal())
        self.advance()
        return items

    def plain(self, lit: Lit, sequence: type = list) -> Any:
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
    attribute kinds, a recorded type that disagrees with the op's rule, a fused body that
    breaks its kind's rules, or an unsound memory plan."""
    return _Parser(Lexer(text, source).tokens(), source).graph()