"""X-Ray filter expressions: parse once, then test traces.

The language of the X-Ray developer guide ("Using filter expressions"):

- boolean keywords ``ok``, ``error``, ``fault``, ``throttle``, ``partial``, alone, negated
  with ``!`` or compared: ``fault = true``;
- number keywords ``responsetime``, ``duration``, ``http.status`` with ``= != < <= > >=``;
- string keywords ``http.url``, ``http.method``, ``http.useragent``, ``http.clientip``,
  ``user`` with ``= !=`` and ``CONTAINS``, ``BEGINSWITH``, ``ENDSWITH``;
- ``annotation.KEY`` (or ``annotation[KEY]``) compared with a string, number or boolean, or
  alone (the key is present; for a boolean annotation, it is true);
- ``group.name = "x"`` / ``group.arn = "..."``: the trace matches that group's expression;
- ``service("name")``, ``service(id(name: "n", type: "t"))``, ``service()`` and
  ``edge("a", "b")``, each optionally followed by ``{ ... }``: a filter applied to the
  requests that service served (or that edge carried) instead of to the whole trace;
- ``AND``, ``OR``, ``!`` and parentheses (``!`` binds tightest, then AND, then OR).

This module turns text into a tree (``parse``); ``matching`` tests traces against it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appmesh_api.xray.analysis import NodeKey
from appmesh_api.xray.errors import InvalidRequestException

BOOLEAN_KEYWORDS = ("ok", "error", "fault", "throttle", "partial")
NUMBER_KEYWORDS = ("responsetime", "duration", "http.status")
STRING_KEYWORDS = ("http.url", "http.method", "http.useragent", "http.clientip", "user")
NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "CONTAINS", "BEGINSWITH", "ENDSWITH")
_WORD_OPS = ("CONTAINS", "BEGINSWITH", "ENDSWITH")

_TOKEN = re.compile(
    r"""(?:
    (?P<string>"(?:[^"\\]|\\.)*")
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    |(?P<op><=|>=|!=|=|<|>)
    |(?P<punct>[!(){}\[\],:])
    |(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return tokens
        match = _TOKEN.match(text, position)
        if match is None:
            raise _invalid(text, position, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()


def _invalid(text: str, at: int, why: str) -> InvalidRequestException:
    return InvalidRequestException(f"Invalid filter expression {text!r}: {why} at position {at}")


# ----------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Target:
    """A service named in ``service()`` or ``edge()``: name and/or type, or anything."""

    name: str | None = None
    type: str | None = None

    def matches(self, key: NodeKey) -> bool:
        if key.is_client:
            return False
        return self.name in (None, key.name) and self.type in (None, key.type)


@dataclass(frozen=True)
class Compare:
    keyword: str  # a built-in keyword, "annotation:<key>" or "group.name"/"group.arn"
    op: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Both:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Either:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class ServiceScope:
    target: Target
    body: Expr | None


@dataclass(frozen=True)
class EdgeScope:
    source: Target
    destination: Target
    body: Expr | None


Expr = Compare | Not | Both | Either | ServiceScope | EdgeScope


# ----------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise _invalid(self.text, len(self.text), "unexpected end of expression")
        self.index += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.take()
        if token.text != text:
            raise _invalid(self.text, token.at, f"expected {text!r}, found {token.text!r}")
        return token

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.kind != "string" and token.text == text

    def parse(self) -> Expr:
        if not self.tokens:
            raise _invalid(self.text, 0, "the expression is empty")
        expr = self.either()
        token = self.peek()
        if token is not None:
            raise _invalid(self.text, token.at, f"unexpected {token.text!r}")
        return expr

    def either(self) -> Expr:
        expr = self.both()
        while self.at_word("OR"):
            self.take()
            expr = Either(expr, self.both())
        return expr

    def both(self) -> Expr:
        expr = self.unary()
        while self.at_word("AND"):
            self.take()
            expr = Both(expr, self.unary())
        return expr

    def unary(self) -> Expr:
        if self.at("!"):
            self.take()
            return Not(self.unary())
        if self.at("("):
            self.take()
            expr = self.either()
            self.expect(")")
            return expr
        return self.term()

    def term(self) -> Expr:
        token = self.take()
        if token.kind != "word":
            raise _invalid(self.text, token.at, f"expected a keyword, found {token.text!r}")
        word = token.text.lower()
        if word == "service" and self.at("("):
            return self.service()
        if word == "edge" and self.at("("):
            return self.edge()
        return self.compare(token)

    def body(self) -> Expr | None:
        if not self.at("{"):
            return None
        self.take()
        expr = self.either()
        self.expect("}")
        return expr

    def service(self) -> ServiceScope:
        self.expect("(")
        target = Target() if self.at(")") else self.target()
        self.expect(")")
        return ServiceScope(target, self.body())

    def edge(self) -> EdgeScope:
        self.expect("(")
        source = self.target()
        self.expect(",")
        destination = self.target()
        self.expect(")")
        return EdgeScope(source, destination, self.body())

    def target(self) -> Target:
        token = self.take()
        if token.kind == "string":
            return Target(name=_unquote(token.text))
        if token.kind == "word" and token.text.lower() == "id":
            return self.id_function()
        raise _invalid(self.text, token.at, "expected a service name or id(...)")

    def id_function(self) -> Target:
        self.expect("(")
        fields: dict[str, str] = {}
        while not self.at(")"):
            key = self.take()
            self.expect(":")
            value = self.take()
            if key.kind != "word" or value.kind != "string":
                raise _invalid(self.text, key.at, 'id() takes name: "..." and type: "..."')
            fields[key.text.lower()] = _unquote(value.text)
            if self.at(","):
                self.take()
        self.expect(")")
        unknown = sorted(set(fields) - {"name", "type"})
        if unknown:
            raise _invalid(self.text, self.peek_at(), f"id() has no field {unknown[0]!r}")
        return Target(fields.get("name"), fields.get("type"))

    def peek_at(self) -> int:
        return self.tokens[self.index - 1].at if self.index else 0

    def compare(self, token: Token) -> Compare:
        word = token.text.lower()
        if word in BOOLEAN_KEYWORDS:
            return self.boolean(word)
        if word in NUMBER_KEYWORDS:
            op, value = self.operator(NUMBER_OPS), self.take()
            if value.kind != "number":
                raise _invalid(self.text, value.at, f"{word} compares with a number")
            return Compare(word, op, float(value.text))
        if word in STRING_KEYWORDS or word in ("group.name", "group.arn"):
            allowed = STRING_OPS if word in STRING_KEYWORDS else ("=", "!=")
            op, value = self.operator(allowed), self.take()
            if value.kind != "string":
                raise _invalid(self.text, value.at, f"{word} compares with a quoted string")
            return Compare(word, op, _unquote(value.text))
        key = self.annotation_key(token)
        if key is None:
            raise _invalid(self.text, token.at, f"unknown keyword {token.text!r}")
        return self.annotation(key)

    def boolean(self, word: str) -> Compare:
        if not (self.at("=") or self.at("!=")):
            return Compare(word)
        op, value = self.take().text, self.take()
        if value.kind != "word" or value.text.lower() not in ("true", "false"):
            raise _invalid(self.text, value.at, f"{word} compares with true or false")
        return Compare(word, op, value.text.lower() == "true")

    def annotation_key(self, token: Token) -> str | None:
        if token.text.startswith("annotation.") and len(token.text) > len("annotation."):
            return token.text[len("annotation.") :]
        if token.text == "annotation" and self.at("["):
            self.take()
            key = self.take()
            self.expect("]")
            return _unquote(key.text) if key.kind == "string" else key.text
        return None

    def annotation(self, key: str) -> Compare:
        token = self.peek()
        if token is None or not (token.kind == "op" or self.at_word(*_WORD_OPS)):
            return Compare("annotation:" + key)
        op, value = self.operator(STRING_OPS + NUMBER_OPS), self.take()
        if value.kind == "string":
            parsed: Any = _unquote(value.text)
        elif value.kind == "number":
            parsed = float(value.text)
        elif value.kind == "word" and value.text.lower() in ("true", "false"):
            parsed = value.text.lower() == "true"
        else:
            raise _invalid(self.text, value.at, "annotations compare with a string, number or bool")
        return Compare("annotation:" + key, op, parsed)

    def operator(self, allowed: Sequence[str]) -> str:
        token = self.take()
        text = token.text.upper() if token.kind == "word" else token.text
        if token.kind not in ("op", "word") or text not in allowed:
            raise _invalid(self.text, token.at, f"expected one of {', '.join(allowed)}")
        return text


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@functools.lru_cache(maxsize=256)
def parse(text: str) -> Expr:
    """Parse a filter expression; InvalidRequestException names what is wrong and where."""
    return _Parser(text).parse()
