r"""The schedule language: which prompt, and which numbers, at every frame.

One small language serves two kinds of schedule. A **prompt schedule** says which
prompt holds from which frame on::

    0:    a red house | a lightning storm:0.5      # two prompts mixed, 1.0 and 0.5
    2.5s: a lion --neg blurry, text                # seconds, and a negative prompt
    "max_f-1": a corgi\: the end                   # the last frame; \: is a literal colon

A **numeric schedule** gives a number per frame, in Deforum's syntax and semantics::

    0:(7.5), 30:(12), "max_f-1":(3 + sin(t / 10))

Both are read by a small tokenizer and recursive-descent parser that keep line and
column. Expressions become our own tiny tree (numbers, variables, a whitelist of
functions, the arithmetic operators) evaluated by our own evaluator: nothing is ever
handed to ``eval``, ``exec`` or numexpr.

Grammar (EBNF). ``ws`` (spaces, tabs; also newlines in a numeric schedule) may stand
between tokens of keys and expressions::

    prompts  = line { newline line } ;                           at least one with a key
    line     = [ key ":" prompt ] [ comment ] ;
    comment  = "#" { character } ;
    prompt   = part { "|" part } [ "--neg" text ] ;              a negative is plain text
    part     = text [ ":" weight ] ;
    text     = { character | "\:" | "\|" | "\#" | "\\" } ;
    weight   = [ "+" | "-" ] number ;

    numeric  = [ "+" | "-" ] number                               a constant
             | entry { "," entry } [ "," ] ;
    entry    = key ":" "(" expr ")" ;

    key      = digits                                             a frame
             | number "s"                                         seconds: round(seconds * fps)
             | '"' expr '"' | "'" expr "'" ;                      of max_f only, then round()
    expr     = term { ( "+" | "-" ) term } ;
    term     = factor { ( "*" | "/" | "//" | "%" ) factor } ;
    factor   = ( "+" | "-" ) factor | power ;
    power    = atom [ "**" factor ] ;                             so -2**2 == -4, 2**3**2 == 512
    atom     = number | name | name "(" expr { "," expr } ")" | "(" expr ")" ;
    number   = digits [ "." [ digits ] ] [ exponent ] | "." digits [ exponent ] ;

A part's weight is the text after its last ``:`` when that text has no whitespace (it
must then be a number; ``a photo: vintage style`` is plain text); the default is 1.0,
and weight 0 or negative weights are kept as written. Lines may come in any order and
are sorted by frame; a frame may appear once. Rounding is Python's ``round``. Blank
lines, indentation, CRLF and a UTF-8 byte-order mark are fine.

Names in expressions: the variables ``t`` (the frame), ``max_f`` (the number of frames,
``max_frames``; Deforum's a1111 extension uses ``max_frames - 1``) and ``s`` (the seed),
only ``max_f`` in a key; the constants ``pi`` and ``e``; the functions ``sin cos tan abs
sqrt exp log floor ceil min max pow``. All arithmetic is in floats, with Python's
semantics for ``//``, ``%`` and ``**``.

Numeric semantics, as Deforum's ``get_inbetweens``: a key whose value is a constant
(no variable, no function call) sets its own frame only, and the frames between
constants are interpolated linearly (towards an expression key's value at its frame); a
key whose value is an expression is evaluated at every frame from its key up to the next
key, with ``t`` the frame. Before the first key the first key's value holds, after the
last constant key that constant holds (Deforum fills the first and last frames with the
first and last values it has). Deforum tells a constant by a regex for a plain decimal,
so its ``(2*3)`` or ``(1e-3)`` would be held until the next key; here anything without a
variable or a function call is a constant. A key at or past the series' end is an error
(Deforum drops it silently).

Errors are :class:`~artwalk.errors.ScheduleError`, one line each::

    SOURCE, line L, column C: found WHAT WAS FOUND, expected WHAT WAS EXPECTED
    SOURCE, line L, column C: division by zero in 't/(t-5)' at t=5

where SOURCE is the file, or the flag that carried the schedule (``--prompts``, ...).
"""

from __future__ import annotations

import hashlib
import functools
import math
import operator
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from artwalk import limits
from artwalk.errors import InputError, ScheduleError

_DIGITS = "0123456789"
_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS = _NAME_START + _DIGITS
_OPERATORS = ("**", "//", "*", "/", "%", "+", "-", "(", ")", ",", ":")
_ESCAPES = "\\:|#"
_VARIABLES = ("t", "max_f", "s")
_KEY_VARIABLES = ("max_f",)
_CONSTANTS = {"pi": math.pi, "e": math.e}
# name -> (fewest arguments, most arguments or None for any number, function)
_FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., float]]] = {
    "sin": (1, 1, math.sin), "cos": (1, 1, math.cos), "tan": (1, 1, math.tan), "abs": (1, 1, abs),
    "sqrt": (1, 1, math.sqrt), "exp": (1, 1, math.exp), "log": (1, 1, math.log),
    "floor": (1, 1, math.floor), "ceil": (1, 1, math.ceil),
    "min": (2, None, min), "max": (2, None, max), "pow": (2, 2, math.pow),
}
_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}
MAX_FRAME = 2**31 - 1  # no key beyond (a 24 fps video of almost three years)
# What a schedule may hold, checked before it is parsed (so any text costs bounded time and memory):
MAX_LINE_CHARS = limits.MAX_PROMPT_CHARS  # one line: a prompt (75 tokens are about 300 characters; longer are chunked)
MAX_LINES = 100_000  # lines of a schedule (each may be a key)
MAX_NUMERIC_CHARS = 1_000_000  # a numeric schedule, often one long line (Deforum's): about 80,000 keys
MAX_SCHEDULE_CHARS = 8_000_000  # a whole schedule (100,000 lines of 80 characters)
_MAX_NESTING = 64  # parentheses, signs and powers nested deeper are refused (no RecursionError)
_MAX_OPERATORS = 256  # binary operators in one expression (the tree is that deep at worst)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Part:
    """One prompt of a composable prompt ``a | b:0.5``, with its weight."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class PromptKey:
    """A line ``FRAME: parts --neg negative`` of a prompt schedule."""

    frame: int
    parts: tuple[Part, ...]  # as written, weight-0 and negative-weight parts included
    negative: str = ""
    line: int = 0

    @property
    def text(self) -> str:
        """The prompt after the colon, normalised (escaped so that it parses back to the same parts;
        weights written as Python writes floats, 1.0 left out): what a keyframe's seed is drawn from."""
        return " | ".join(_escape(p.text) + ("" if p.weight == 1.0 else f":{p.weight!r}") for p in self.parts)


@dataclass(frozen=True)
class PromptSchedule:
    """Prompt keys sorted by frame; the first prompt also holds before the first key."""

    keys: tuple[PromptKey, ...]
    source: str
    uses_max_f: bool = False  # whether a key's frame is an expression of max_f

    @property
    def last_frame(self) -> int:
        return self.keys[-1].frame

    @functools.cached_property
    def _frames(self) -> list[int]:
        """The keys' frames, in order: looked up by bisection."""
        return [k.frame for k in self.keys]

    def at(self, frame: int) -> tuple[int, int, float]:
        """``(a, b, blend)``: the index of the key at or before ``frame``, of the next key, and
        ``(frame - frame_a) / (frame_b - frame_a)``. Before the first key ``(0, 0, 0.0)``; at or after
        the last ``(last, last, 0.0)``."""
        a = bisect_right(self._frames, frame) - 1
        if a < 0:
            return 0, 0, 0.0
        if a == len(self.keys) - 1:
            return a, a, 0.0
        fa, fb = self.keys[a].frame, self.keys[a + 1].frame
        return a, a + 1, (frame - fa) / (fb - fa)

    def mix(self, frame: int) -> tuple[Part, ...]:
        """The prompts at ``frame``: key a's parts at ``weight * (1 - blend)``, then key b's at
        ``weight * blend``; the weights of identical texts are added, and zero weights dropped."""
        a, b, blend = self.at(frame)
        weights: dict[str, float] = {}
        for key, share in ((self.keys[a], 1.0 - blend), (self.keys[b], blend)):
            for part in key.parts:
                weights[part.text] = weights.get(part.text, 0.0) + part.weight * share
        return tuple(Part(text, w) for text, w in weights.items() if w != 0.0)


def keyframe_seed(walk_seed: int, key: PromptKey) -> int:
    """A keyframe's seed in ``[0, 2**32)``, from the walk's seed and the key's text only (sha256):
    the same prompt gets the same seed wherever it stands in the schedule. Parts of weight 0
    are left out (they have no effect, on the seed neither); the negative prompt is not in it."""
    acting = PromptKey(key.frame, tuple(p for p in key.parts if p.weight != 0.0))
    digest = hashlib.sha256(f"{walk_seed}\n{acting.text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


# ---------------------------------------------------------------- source text and errors


@dataclass(frozen=True)
class _Source:
    """Normalised schedule text and its name, and the one place errors are worded."""

    name: str
    text: str

    @classmethod
    def of(cls, text: str, name: str, max_line: int = MAX_LINE_CHARS) -> _Source:
        """The text as it is parsed; refused at once if it holds too many lines, or a line longer
        than ``max_line`` characters."""
        if len(text) > MAX_SCHEDULE_CHARS:
            raise ScheduleError(f"{_one_line(name)}: {len(text)} characters, more than the {MAX_SCHEDULE_CHARS} a "
                                "schedule may hold")
        text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        src = cls(_one_line(name), text)
        start = 0
        for number in range(1, MAX_LINES + 1):
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            if end - start > max_line:
                raise src.error(start + max_line, f"line {number} is {end - start} characters long, more than "
                                f"the {max_line} a line may have")
            if end == len(text):
                return src
            start = end + 1
        raise src.error(start, f"more than the {MAX_LINES} lines a schedule may have")

    def where(self, pos: int) -> str:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - self.text.rfind("\n", 0, pos)
        return f"line {line}, column {column}"

    def error(self, pos: int, message: str) -> ScheduleError:
        return ScheduleError(f"{self.name}, {self.where(pos)}: {message}")

    def found(self, pos: int, found: str, expected: str) -> ScheduleError:
        return self.error(pos, f"found {found}, expected {expected}")


def _one_line(name: str) -> str:
    """A file name or a flag as it goes into a one-line message."""
    return name.replace("\n", "\\n").replace("\r", "\\r")


def _quoted(text: str) -> str:
    """``text`` in quotes for a message, shortened past 40 characters."""
    text = text if len(text) <= 40 else text[:37] + "..."
    return f'"{text}"' if "'" in text and '"' not in text else f"'{text}'"


def _scan_number(text: str, i: int, end: int) -> int:
    """The end of the number that starts at ``i`` (``i`` itself when none does)."""
    j = i
    while j < end and text[j] in _DIGITS:
        j += 1
    digits = j - i
    if j < end and text[j] == ".":
        k = j + 1
        while k < end and text[k] in _DIGITS:
            k += 1
        if digits or k > j + 1:
            digits, j = digits + k - j - 1, k
    if not digits:
        return i
    if j < end and text[j] in "eE":
        k = j + 2 if j + 1 < end and text[j + 1] in "+-" else j + 1
        m = k
        while m < end and text[m] in _DIGITS:
            m += 1
        if m > k:
            j = m
    return j


def _is_number(text: str) -> bool:
    """Whether all of ``text`` is one number, with an optional sign."""
    sign = 1 if text[:1] in ("+", "-") else 0
    return len(text) > sign and _scan_number(text, sign, len(text)) == len(text)


def _finite_number(src: _Source, pos: int, text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise src.found(pos, text, "a finite number")
    return value


# ---------------------------------------------------------------- expression trees


@dataclass(frozen=True)
class _Num:
    value: float
    pos: int


@dataclass(frozen=True)
class _Var:
    name: str
    pos: int


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    pos: int


@dataclass(frozen=True)
class _Unary:
    op: str
    operand: _Node
    pos: int


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Node
    right: _Node
    pos: int


_Node = Union[_Num, _Var, _Call, _Unary, _Binary]


def _walk(node: _Node):
    """The node and every node below it."""
    yield node
    match node:
        case _Unary(operand=operand):
            yield from _walk(operand)
        case _Binary(left=left, right=right):
            yield from _walk(left)
            yield from _walk(right)
        case _Call(args=args):
            for arg in args:
                yield from _walk(arg)


class _EvalError(Exception):
    """An operation that has no finite real value, at the position of its operator or function."""

    def __init__(self, pos: int, message: str):
        super().__init__(message)
        self.pos = pos


def _operand(x: float) -> str:
    return f"{x:g}" if x >= 0 else f"({x:g})"


def _finite(pos: int, value: float, what: str) -> float:
    if not math.isfinite(value):
        raise _EvalError(pos, f"{what} is not finite")
    return value


def _eval(node: _Node, env: dict[str, float]) -> float:
    """The value of a tree; :class:`_EvalError` names the operator or function that failed."""
    match node:
        case _Num(value=value):
            return value
        case _Var(name=name):
            return env[name]
        case _Unary(op=op, operand=operand):
            value = _eval(operand, env)
            return -value if op == "-" else value
        case _Binary(op=op, left=left, right=right, pos=pos):
            a, b = _eval(left, env), _eval(right, env)
            shown = f"{_operand(a)} {op} {_operand(b)}"
            try:
                value = _BINARY[op](a, b)
            except ZeroDivisionError:
                raise _EvalError(pos, "modulo by zero" if op == "%" else "division by zero") from None
            except OverflowError:
                raise _EvalError(pos, f"{shown} overflows") from None
            if isinstance(value, complex):
                raise _EvalError(pos, f"{shown} is not a real number")
            return _finite(pos, value, shown)
        case _Call(name=name, args=args, pos=pos):
            values = [_eval(arg, env) for arg in args]
            call = f"{name}({', '.join(f'{v:g}' for v in values)})"
            try:
                value = float(_FUNCTIONS[name][2](*values))
            except ValueError:
                raise _EvalError(pos, f"{call} is undefined (outside the function's domain)") from None
            except OverflowError:
                raise _EvalError(pos, f"{call} overflows") from None
            return _finite(pos, value, call)
    raise TypeError(f"not an expression node: {node!r}")


def _evaluate(src: _Source, node: _Node, env: dict[str, float], written: str, at: str) -> float:
    try:
        return _eval(node, env)
    except _EvalError as exc:
        raise src.error(exc.pos, f"{exc} in '{written}'{at}") from None


# ---------------------------------------------------------------- tokens and the parser


@dataclass(frozen=True)
class _Token:
    kind: str  # num, sec, name, str, op, char, end
    text: str
    pos: int
    end: int
    value: float = 0.0


@dataclass(frozen=True)
class _Frame:
    """A key's frame: fixed (an integer, seconds, a constant expression) or an expression of max_f."""

    pos: int
    written: str
    frame: int | None = None
    expr: _Node | None = None

    def resolve(self, src: _Source, max_frames: int | None) -> int:
        frame = self.frame
        if self.expr is not None:
            if max_frames is None:
                raise src.error(self.pos, f"the frame {self.written} uses max_f: give --frames N")
            value = _evaluate(src, self.expr, {"max_f": float(max_frames)}, self.written[1:-1],
                              f" with max_f={max_frames}")
            frame = round(value)
        found = f"frame {frame}" + ("" if self.written == str(frame) else f" from {self.written}")
        if frame < 0:
            raise src.found(self.pos, found, "a frame >= 0")
        if frame > MAX_FRAME or (max_frames is not None and frame >= max_frames):
            limit = MAX_FRAME + 1 if max_frames is None else max_frames
            raise src.found(self.pos, found,
                            f"a frame below {limit}" + ("" if max_frames is None else " (the number of frames)"))
        return frame


class _Parser:
    """The tokens of ``src.text[pos:end]`` and the expression grammar over them."""

    def __init__(self, src: _Source, pos: int, end: int, *, names: tuple[str, ...], newlines: bool,
                 end_name: str):
        self.src, self.pos, self.end = src, pos, end
        self.names, self.newlines, self.end_name = names, newlines, end_name
        self.depth = 0
        self.operators = 0
        self._peeked: _Token | None = None

    # -- tokens

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._lex()
        return self._peeked

    def take(self) -> _Token:
        tok = self.peek()
        self.pos, self._peeked = tok.end, None
        return tok

    def _lex(self) -> _Token:
        text, i, end = self.src.text, self.pos, self.end
        spaces = " \t\n" if self.newlines else " \t"
        while i < end and text[i] in spaces:
            i += 1
        if i >= end or text[i] == "\n":
            return _Token("end", "", i, i)
        j = _scan_number(text, i, end)
        if j > i:
            value = _finite_number(self.src, i, text[i:j])
            if j < end and text[j] == "s" and not (j + 1 < end and text[j + 1] in _NAME_CHARS):
                return _Token("sec", text[i:j + 1], i, j + 1, value)
            return _Token("num", text[i:j], i, j, value)
        c = text[i]
        if c in _NAME_START:
            j = i + 1
            while j < end and text[j] in _NAME_CHARS:
                j += 1
            return _Token("name", text[i:j], i, j)
        if c in "\"'":
            j, newline = text.find(c, i + 1, end), text.find("\n", i + 1, end)
            if j < 0 or 0 <= newline < j:
                raise self.src.found(i, f"an unclosed {c}", f"a closing {c} on the same line")
            return _Token("str", text[i:j + 1], i, j + 1)
        for op in _OPERATORS:
            if text.startswith(op, i, end):
                return _Token("op", op, i, i + len(op))
        return _Token("char", c, i, i + 1)

    def is_op(self, tok: _Token, *ops: str) -> bool:
        return tok.kind == "op" and tok.text in ops

    def error(self, tok: _Token, expected: str) -> ScheduleError:
        return self.src.found(tok.pos, self.end_name if tok.kind == "end" else _quoted(tok.text), expected)

    def expect(self, op: str, expected: str) -> _Token:
        tok = self.take()
        if not self.is_op(tok, op):
            raise self.error(tok, expected)
        return tok

    # -- keys

    def key(self, fps: float | None) -> _Frame:
        """``digits``, ``number "s"`` or a quoted expression of max_f."""
        tok = self.take()
        if self.is_op(tok, "-") and self.peek().kind in ("num", "sec"):
            raise self.src.found(tok.pos, f"-{self.take().text}", "a frame >= 0")
        if tok.kind == "num":
            if any(c not in _DIGITS for c in tok.text):
                raise self.error(tok, "a whole frame number, or seconds like 2.5s")
            return _Frame(tok.pos, tok.text, frame=round(tok.value))
        if tok.kind == "sec":
            if fps is None:
                raise self.src.error(tok.pos, f"the frame {tok.text} is in seconds, which needs a frame rate: "
                                              "give --fps")
            return _Frame(tok.pos, tok.text, frame=round(tok.value * fps))
        if tok.kind == "str":
            quote = tok.text[0]
            inner = _Parser(self.src, tok.pos + 1, tok.end - 1, names=_KEY_VARIABLES, newlines=False,
                            end_name=f"the closing {quote}")
            node = inner.expr()
            after = inner.take()
            if after.kind != "end":
                raise inner.error(after, f"an operator or the closing {quote}")
            if any(isinstance(n, _Var) for n in _walk(node)):
                return _Frame(tok.pos, tok.text, expr=node)
            return _Frame(tok.pos, tok.text, frame=round(_evaluate(self.src, node, {}, tok.text[1:-1], "")))
        raise self.error(tok, "a frame: an integer, seconds like 2.5s, or a quoted max_f expression")

    # -- expressions

    def expr(self) -> _Node:
        node = self.term()
        while self.is_op(self.peek(), "+", "-"):
            tok = self.binary()
            node = _Binary(tok.text, node, self.term(), tok.pos)
        return node

    def term(self) -> _Node:
        node = self.factor()
        while self.is_op(self.peek(), "*", "/", "//", "%"):
            tok = self.binary()
            node = _Binary(tok.text, node, self.factor(), tok.pos)
        return node

    def binary(self) -> _Token:
        """Take a binary operator, refusing an expression too long to evaluate."""
        tok = self.take()
        self.operators += 1
        if self.operators > _MAX_OPERATORS:
            raise self.src.found(tok.pos, f"more than {_MAX_OPERATORS} operators", "a shorter expression")
        return tok

    def factor(self) -> _Node:
        tok = self.peek()
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise self.src.found(tok.pos, f"more than {_MAX_NESTING} nested levels", "a simpler expression")
        if self.is_op(tok, "+", "-"):
            self.take()
            node: _Node = _Unary(tok.text, self.factor(), tok.pos)
        else:
            node = self.power()
        self.depth -= 1
        return node

    def power(self) -> _Node:
        base = self.atom()
        if self.is_op(self.peek(), "**"):
            tok = self.take()
            return _Binary("**", base, self.factor(), tok.pos)
        return base

    def atom(self) -> _Node:
        tok = self.take()
        if tok.kind == "num":
            return _Num(tok.value, tok.pos)
        if tok.kind == "name":
            if self.is_op(self.peek(), "("):
                return self.call(tok)
            if tok.text in _CONSTANTS:
                return _Num(_CONSTANTS[tok.text], tok.pos)
            if tok.text in self.names:
                return _Var(tok.text, tok.pos)
            if tok.text in _FUNCTIONS:
                raise self.error(self.peek(), f"'(' after the function {tok.text}")
            names = (f"the variable {self.names[0]}" if len(self.names) == 1
                     else f"a variable {', '.join(self.names[:-1])} or {self.names[-1]}")
            raise self.error(tok, f"{names}, a number or a function")
        if self.is_op(tok, "("):
            node = self.expr()
            close = self.take()
            if not self.is_op(close, ")"):
                raise self.error(close, f"an operator or ')' to close the '(' at {self.src.where(tok.pos)}")
            return node
        raise self.error(tok, "a number, a variable, a function or '('")

    def call(self, name: _Token) -> _Node:
        if name.text not in _FUNCTIONS:
            raise self.error(name, f"a function: {', '.join(_FUNCTIONS)}")
        self.take()
        args = [self.expr()]
        while self.is_op(self.peek(), ","):
            self.take()
            args.append(self.expr())
        close = self.take()
        if not self.is_op(close, ")"):
            raise self.error(close, f"an operator, ',' or ')' to close {name.text}(")
        fewest, most, _ = _FUNCTIONS[name.text]
        if len(args) < fewest or (most is not None and len(args) > most):
            want = f"{fewest}" if fewest == most else f"at least {fewest}"
            raise self.src.found(name.pos, f"{len(args)} argument{'s' * (len(args) != 1)} to {name.text}",
                                 f"{want} argument{'s' * (want != '1')}")
        return _Call(name.text, tuple(args), name.pos)


def _check_frames(src: _Source, specs: list[_Frame], max_frames: int | None) -> list[int]:
    """Each key's frame, in the order written; a frame given twice is an error."""
    first: dict[int, int] = {}
    frames = []
    for spec in specs:
        frame = spec.resolve(src, max_frames)
        if frame in first:
            raise src.found(spec.pos, f"frame {frame} again",
                            f"each frame once (frame {frame} is first at {src.where(first[frame])})")
        first[frame] = spec.pos
        frames.append(frame)
    return frames


# ---------------------------------------------------------------- prompt schedules


def _escape(text: str) -> str:
    for c in _ESCAPES:
        text = text.replace(c, "\\" + c)
    return text


def _words(chars: list[tuple[str, int, bool]]) -> str:
    return " ".join("".join(c for c, _, _ in chars).split())


def _is_space(chars: list[tuple[str, int, bool]], i: int) -> bool:
    return i < 0 or i >= len(chars) or (chars[i][0].isspace() and not chars[i][2])


def _prompt(src: _Source, start: int, end: int) -> tuple[tuple[Part, ...], str]:
    """The parts and the negative of the prompt text in ``src.text[start:end]`` (one line)."""
    text = src.text
    chars: list[tuple[str, int, bool]] = []  # (character, position, escaped)
    i = start
    while i < end and text[i] != "#":
        if text[i] == "\\" and i + 1 < end and text[i + 1] in _ESCAPES:
            chars.append((text[i + 1], i, True))
            i += 2
        else:
            chars.append((text[i], i, False))
            i += 1
    closer = (i, "a comment" if i < end else "end of line")
    negative = ""
    for j in range(len(chars)):
        if "".join(c for c, _, e in chars[j:j + 5] if not e) == "--neg" and _is_space(chars, j - 1) \
                and _is_space(chars, j + 5):
            negative = _words(chars[j + 5:])
            if not negative:
                raise src.found(closer[0], closer[1], "a negative prompt after --neg")
            chars, closer = chars[:j], (chars[j][1], "'--neg'")
            break
    parts, current = [], []
    for c, pos, escaped in chars:
        if c == "|" and not escaped:
            parts.append(_part(src, current, (pos, "'|'")))
            current = []
        else:
            current.append((c, pos, escaped))
    parts.append(_part(src, current, closer))
    if not any(p.weight > 0 for p in parts):
        raise src.found(next((pos for c, pos, _ in chars if not c.isspace()), start), "no part with a positive weight",
                        "at least one part with a weight above 0 (a negative weight is a negative prompt)")
    return tuple(parts), negative


def _part(src: _Source, chars: list[tuple[str, int, bool]], closer: tuple[int, str]) -> Part:
    """``text [":" weight]``; ``closer`` is where and what ends the part, for messages."""
    colon = next((k for k in range(len(chars) - 1, -1, -1) if chars[k][0] == ":" and not chars[k][2]), None)
    if colon is not None:
        written = "".join(c for c, _, _ in chars[colon + 1:]).strip()
        if not any(c.isspace() for c in written):
            at = next((p for c, p, _ in chars[colon + 1:] if not c.isspace()), chars[colon][1] + 1)
            if not _is_number(written):
                raise src.found(at, _quoted(written) if written else "nothing",
                                "a number weight after ':' (write \\: for a literal colon)")
            weight = _finite_number(src, at, written)
            text = _words(chars[:colon])
            if not text:
                raise src.found(chars[colon][1], _quoted(":" + written), "a prompt text before the weight")
            return Part(text, weight)
    text = _words(chars)
    if not text:
        raise src.found(closer[0], closer[1], "a prompt text")
    return Part(text)


def parse_prompts(text: str, *, fps: float | None = None, max_frames: int | None = None,
                  source: str = "--prompts") -> PromptSchedule:
    """Read a prompt schedule (see the module docstring); ``fps`` is needed for keys in seconds,
    ``max_frames`` for keys that use max_f, and bounds every frame when given."""
    src = _Source.of(text, source)
    specs, lines = [], []
    start = 0
    for number, line in enumerate(src.text.split("\n"), 1):
        end = start + len(line)
        body = line.strip()
        if body and not body.startswith("#"):
            p = _Parser(src, start, end, names=_KEY_VARIABLES, newlines=False, end_name="end of line")
            spec = p.key(fps)
            p.expect(":", "':' after the frame")
            parts, negative = _prompt(src, p.pos, end)
            specs.append(spec)
            lines.append((number, parts, negative))
        start = end + 1
    if not specs:
        raise src.found(0, "end of file", "a prompt line 'FRAME: text'")
    frames = _check_frames(src, specs, max_frames)
    keys = sorted((PromptKey(frame, parts, negative, number) for frame, (number, parts, negative)
                   in zip(frames, lines)), key=lambda k: k.frame)
    return PromptSchedule(tuple(keys), src.name, any(s.expr is not None for s in specs))


def parse_prompt(text: str, *, source: str = "--prompt") -> PromptKey:
    """One prompt, as the text after a schedule line's colon: ``a | b:0.5 --neg c`` (at frame 0)."""
    src = _Source.of(text, source)
    body = src.text.strip()
    if "\n" in body:
        raise src.found(src.text.index("\n", src.text.index(body[0])), "a new line", "one prompt on one line")
    parts, negative = _prompt(src, 0, len(src.text.rstrip("\n")))
    return PromptKey(0, parts, negative, 1)


def read_prompts(file_or_text: str, *, fps: float | None = None, max_frames: int | None = None) -> PromptSchedule:
    """A prompt schedule from a file (UTF-8), or from the text itself when no such file exists
    (its errors then begin "the schedule, line L, column C").

    Text that looks like a path (one line, no ':', ending in ``.txt`` or holding a ``/``) but
    names no file is refused as a missing file rather than read as a schedule."""
    path = _existing_path(file_or_text)
    if path is None:
        one_line = "\n" not in file_or_text and ":" not in file_or_text
        if one_line and (file_or_text.strip().endswith(".txt") or "/" in file_or_text):
            raise InputError(f"{_one_line(file_or_text)}: no such schedule file")
        return parse_prompts(file_or_text, fps=fps, max_frames=max_frames, source="the schedule")
    shown = _one_line(str(path))
    if path.is_dir():
        raise InputError(f"{shown}: is a folder, expected a schedule file")
    try:
        if path.stat().st_size > 4 * MAX_SCHEDULE_CHARS:  # UTF-8: at most 4 bytes a character
            raise InputError(f"{shown}: {path.stat().st_size} bytes, more than a schedule may hold "
                             f"({MAX_SCHEDULE_CHARS} characters)")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown}: not UTF-8 text (byte {exc.start}); save the schedule as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read the schedule ({exc.strerror or exc})") from None
    return parse_prompts(text, fps=fps, max_frames=max_frames, source=str(path))


def _existing_path(text: str) -> Path | None:
    if not text.strip() or "\n" in text or "\0" in text:
        return None
    try:
        path = Path(text)
        return path if path.exists() else None
    except (OSError, ValueError):  # a name too long for the file system
        return None


# ---------------------------------------------------------------- numeric schedules


@dataclass(frozen=True)
class NumericKey:
    """One ``FRAME:(value)`` entry as parsed."""

    frame: _Frame
    value: _Node
    written: str  # the value as written, for messages
    constant: float | None  # the value when it uses no variable and no function: interpolated


@dataclass(frozen=True)
class NumericSchedule:
    """A number per frame, with Deforum's semantics (see the module docstring)."""

    source: str
    text: str  # normalised: no byte-order mark, newlines as \n
    keys: tuple[NumericKey, ...]  # in the order written
    uses_max_f: bool = False  # whether a key's frame is an expression of max_f

    def values(self, frames: int, seed: int = 0) -> list[float]:
        """One value per frame ``0 .. frames - 1``; ``max_f`` is ``frames``, ``s`` is ``seed``."""
        keyed = self._keyed(frames)
        env = {"max_f": float(frames), "s": float(seed)}
        return [self._value(keyed, i, env) for i in range(frames)]

    def value_at(self, frame: int, frames: int, seed: int = 0) -> float:
        """``values(frames, seed)[frame]``, without computing the others."""
        if not 0 <= frame < frames:
            raise ValueError(f"frame {frame} is outside 0..{frames - 1}")
        return self._value(self._keyed(frames), frame, {"max_f": float(frames), "s": float(seed)})

    def _keyed(self, frames: int) -> list[tuple[int, NumericKey]]:
        if frames < 1:
            raise ValueError(f"a schedule needs at least 1 frame, got {frames}")
        found = _check_frames(_Source(self.source, self.text), [k.frame for k in self.keys], frames)
        return sorted(zip(found, self.keys), key=lambda fk: fk[0])

    def _value(self, keyed: list[tuple[int, NumericKey]], i: int, env: dict[str, float]) -> float:
        k = bisect_right(keyed, i, key=lambda fk: fk[0]) - 1  # by bisection: no list built per frame
        if k < 0:  # before the first key: its value holds
            return self._at(*keyed[0], env)
        fa, key = keyed[k]
        if key.constant is None:  # an expression runs until the next key
            return self._at(i, key, env)
        if fa == i or k == len(keyed) - 1:
            return key.constant
        fb, after = keyed[k + 1]
        return key.constant + (self._at(fb, after, env) - key.constant) * (i - fa) / (fb - fa)

    def _at(self, frame: int, key: NumericKey, env: dict[str, float]) -> float:
        if key.constant is not None:
            return key.constant
        return _evaluate(_Source(self.source, self.text), key.value, {**env, "t": float(frame)}, key.written,
                         f" at t={frame}")


def parse_numeric(text: str, *, fps: float | None = None, max_frames: int | None = None,
                  source: str = "--numeric") -> NumericSchedule:
    """Read a numeric schedule, ``0:(7.5), 30:(12)``, or a plain number (a constant).

    ``fps`` is needed for keys in seconds. With ``max_frames`` every key is checked against that
    length now; without, keys of max_f are checked by ``values``, against the length it is given."""
    if len(text) > MAX_NUMERIC_CHARS:
        raise ScheduleError(f"{_one_line(source)}: {len(text)} characters, more than the {MAX_NUMERIC_CHARS} a "
                            "numeric schedule may have")
    src = _Source.of(text, source, max_line=MAX_NUMERIC_CHARS)
    body = src.text.strip()
    if not body:
        raise src.found(len(src.text), "end of text", "a number, or keys like 0:(7.5)")
    if _is_number(body):
        value = _finite_number(src, src.text.index(body[0]), body)
        keys = [NumericKey(_Frame(0, "0", frame=0), _Num(value, 0), body, value)]
    else:
        p = _Parser(src, 0, len(src.text), names=_VARIABLES, newlines=True, end_name="end of text")
        keys = [_entry(p, fps)]
        while (tok := p.take()).kind != "end":
            if not p.is_op(tok, ","):
                raise p.error(tok, "',' and the next key, or the end")
            if p.peek().kind == "end":  # a trailing comma
                break
            keys.append(_entry(p, fps))
    _check_frames(src, [k.frame for k in keys if k.frame.expr is None or max_frames is not None], max_frames)
    return NumericSchedule(src.name, src.text, tuple(keys), any(k.frame.expr is not None for k in keys))


def _entry(p: _Parser, fps: float | None) -> NumericKey:
    """``key ":" "(" expr ")"``"""
    frame = p.key(fps)
    p.expect(":", "':' after the frame")
    opening = p.expect("(", "'(' and a value, like 0:(7.5)")
    value = p.expr()
    closing = p.take()
    if not p.is_op(closing, ")"):
        raise p.error(closing, f"an operator or ')' to close the '(' at {p.src.where(opening.pos)}")
    written = " ".join(p.src.text[opening.end:closing.pos].split())
    varies = any(isinstance(n, (_Var, _Call)) for n in _walk(value))
    return NumericKey(frame, value, written, None if varies else _evaluate(p.src, value, {}, written, ""))
