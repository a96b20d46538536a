"""A reader for the subset of Bicep that harness.export.bicep writes (params, resources,
object and array literals, strings, numbers, references), so tests can compare the Bicep
output with the ARM template value by value. Not a Bicep implementation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"(?P<comment>//[^\n]*)|(?P<newline>\n)|(?P<space>[ \t\r]+)"
    r"|(?P<string>'(?:\\.|[^'\\])*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[{}\[\]:=@(),.])"
)
_ESCAPES = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


@dataclass(frozen=True)
class Ref:
    """A bare identifier: a parameter or resource reference."""

    name: str


@dataclass
class Resource:
    type: str
    existing: bool
    body: dict[str, Any]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], text[1:-1])


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected text at {position}: {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("comment", "space"):
            tokens.append((kind, match.group(0)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise ValueError(f"expected {value!r}, got {token[1]!r} at token {self.index}")
        self.index += 1
        return token

    def newlines(self) -> None:
        while self.peek()[0] == "newline":
            self.index += 1

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return _unescape(text)
        if kind == "number":
            return int(text)
        if kind == "name":
            return {"true": True, "false": False}.get(text, Ref(text))
        if text == "[":
            items = []
            self.newlines()
            while self.peek()[1] != "]":
                items.append(self.value())
                self.newlines()
            self.take("]")
            return items
        if text == "{":
            body: dict[str, Any] = {}
            self.newlines()
            while self.peek()[1] != "}":
                key_kind, key = self.take()
                body[_unescape(key) if key_kind == "string" else key] = (
                    self.take(":"),
                    self.value(),
                )[1]
                self.newlines()
            self.take("}")
            return body
        raise ValueError(f"unexpected {text!r}")

    def document(self) -> tuple[dict[str, Any], dict[str, Resource]]:
        params: dict[str, Any] = {}
        resources: dict[str, Resource] = {}
        self.newlines()
        while self.peek()[0] != "eof":
            _, word = self.take()
            if word == "@":  # a decorator: @name(...)
                self.take()
                depth = 0
                while True:
                    _, text = self.take()
                    depth += {"(": 1, ")": -1}.get(text, 0)
                    if depth == 0:
                        break
            elif word == "param":
                _, name = self.take()
                self.take()  # the type
                self.take("=")
                params[name] = self.value()
            elif word == "resource":
                _, name = self.take()
                _, type_text = self.take()
                existing = self.peek()[1] == "existing"
                if existing:
                    self.take()
                self.take("=")
                resources[name] = Resource(_unescape(type_text), existing, self.value())
            else:
                raise ValueError(f"unexpected statement {word!r}")
            self.newlines()
        return params, resources


def read_bicep(text: str) -> tuple[dict[str, Any], dict[str, Resource]]:
    """(params by name with their defaults, resources by symbolic name)."""
    return _Parser(text).document()
