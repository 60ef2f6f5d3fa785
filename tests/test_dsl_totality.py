"""The pattern language is total: every input gives a module or a PypmError (with a rendered
message) within 2 seconds, never another exception; every guard evaluation ends within 2
seconds. Hostile texts by hand, and random ones from hypothesis."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pypm
from pypm.errors import LimitError, PatternSyntaxError
from pypm.lang import guard_function
from pypm.lang.limits import MAX_CORE_DEPTH, MAX_NESTING
from pypm.lang.parse import EXAMPLES
from pypm.lang.terms import Term

SECONDS = 2.0
EXAMPLES_N = int(os.environ.get("PYPM_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES_N, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _warm_parser():
    pypm.loads("def Warm(x):\n    return x\n")  # building the grammar is not part of any timing


def outcome(text: object) -> pypm.PypmError | None:
    """Load text: None when it loads, the PypmError when not; anything else fails the test,
    and so does taking more than SECONDS."""
    t0 = time.perf_counter()
    try:
        pypm.loads(text)  # type: ignore[arg-type]
        err = None
    except pypm.PypmError as e:
        assert e.message and e.render()
        err = e
    elapsed = time.perf_counter() - t0
    assert elapsed < SECONDS, f"{elapsed:.2f}s"
    return err


def body(expr: str) -> str:
    return f"def P(x):\n    return {expr}\n"


def guarded(guard: str) -> str:
    return f"def P(x):\n    assert {guard}\n    return f(x)\n"


N = 10_000
HOSTILE = {
    # nesting, each a former RecursionError
    "calls": body("f(" * 300 + "x" + ")" * 300),
    "parens": body("(" * 100_000 + "x" + ")" * 100_000),
    "lists": body("f(x, " + "[" * 600 + "1" + "]" * 600 + ")"),
    "alternatives": body(" | ".join(["f(x)"] * 1000)),
    "sums": body(" + ".join(["x"] * 1000)),
    "unary": body("-" * 1000 + "x"),
    "ands": guarded(" and ".join(["x.ndim == 1"] * 1000)),
    "nots": guarded("not " * 1000 + "x"),
    "subscripts": guarded("x" + "[0]" * 1000 + " == 1"),
    "attributes": guarded("x" + ".shape" * 1000 + " == 1"),
    "walrus": body("(y := " * 300 + "x" + ")" * 300),
    "conditionals": body("x" + " if x else fail" * 300),
    "locals": "def P(x):\n" + "".join(f"    a{i} = f(x)\n" for i in range(400))
              + "    return g(" + ", ".join(f"a{i}" for i in range(400)) + ")\n",
    "wide operator": body("g(" + ", ".join(["x"] * 400) + ")"),
    "call arguments": body("Q(" + ", ".join(["f(x)"] * 400) + ")")
                      + "def Q(" + ", ".join(f"a{i}" for i in range(400)) + "):\n    return _\n",
    # sizes
    "huge tuple": body("f(x, (" + "1, " * 100_000 + "))"),
    "long string": body("f(x, '" + "a" * 1_000_000 + "')"),
    "many strings": body("f(x, " + "'a' " * 100_000 + ")"),
    "int over 4300 digits": body("f(x, " + "9" * 5000 + ")"),
    "long float": body("f(x, " + "9" * 3000 + ".5e99999)"),
    "10k params": "def P(" + ", ".join(f"a{i}" for i in range(N)) + "):\n    return f(a0)\n",
    "10k keywords": body("softmax(x, " + ", ".join(f"k{i}=1" for i in range(N)) + ")"),
    "comparison chain": guarded("x " + "< x " * N),
    "decorators": "@pattern\n" * 1000 + "def P(x):\n    return x\n",
    "left recursion chain": "".join(f"def P{i}(x):\n    return P{(i + 1) % 300}(x) | f(x)\n"
                                    for i in range(300)),
    "call chain": "".join(f"def P{i}(x):\n    return f(P{i - 1}(x)) | g(_)\n" for i in range(300, 0, -1))
                  + "def P0(x):\n    return _\n",
    # characters
    "NUL": body("f(x\x00)"),
    "NUL in string": body("f(x, '\x00')"),
    "tabs": "def P(x):\n\treturn x\n",
    "mixed tabs": "def P(x):\n\tassert x == 1\n        return x\n",
    "lone surrogate in string": body("f(x, '\ud800')"),
    "lone surrogate in name": "def P(x\ud800):\n    return x\n",
    "unicode name": body("fé(x)"),
    "unicode separators": body("f(x, '\u2028\U0001F600')") + "\u2028\x0c\x1c",
    "form feed": "def P(x):\n\x0c    return x\n",
    "carriage returns": "def P(x):\r    return x\r",
    "bad escape": body(r"f(x, '\N{NO SUCH NAME}')"),
    "empty": "",
    "only comment": "# nothing",
    # not text
    "bytes": b"def P(x):\n    return x\n",
    "non-UTF-8 bytes": b"def P(x):\n    return f(x, '\xff')\n",
    "None": None,
    "int": 3,
    "list": ["def P(x):\n    return x\n"],
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_gives_a_result_or_a_pypm_error_quickly(name):
    outcome(HOSTILE[name])


def test_nesting_past_the_limit_names_the_limit():
    err = outcome(HOSTILE["calls"])
    assert isinstance(err, LimitError) and f"deeper than {MAX_NESTING}" in err.message
    err = outcome(HOSTILE["locals"])
    assert isinstance(err, LimitError) and str(MAX_CORE_DEPTH) in err.message
    assert outcome(body("f(" * 40 + "x" + ")" * 40)) is None  # deep but within the limits


def test_non_utf8_bytes_point_at_the_byte():
    err = outcome(HOSTILE["non-UTF-8 bytes"])
    assert isinstance(err, PatternSyntaxError) and (err.line, err.col) == (2, 18)


def test_bytes_load_like_text():
    assert outcome(HOSTILE["bytes"]) is None


def test_left_recursion_through_a_long_chain_is_still_rejected():
    assert isinstance(outcome(HOSTILE["left recursion chain"]), pypm.errors.LeftRecursionError)


# --- guards: evaluation is bounded -----------------------------------------------------------

HOSTILE_GUARDS = [
    "(10 ** 4096) ** 4096 > 0",
    "2 ** 10 ** 10 > 0",
    "10 ** 4000 * 10 ** 4000 * 10 ** 4000 * 10 ** 4000 * 10 ** 4000 > 0",
    "len('a' * 10 ** 10) > 0",
    "len((1,) * 10 ** 10) > 0",
    "len('%0999999999d' % 1) > 0",
    "len(('ab' * 4000) + ('ab' * 4000)) > 0",
    "x.shape[10 ** 100] == 1",
    "x.shape[::10 ** 100] == ()",
    "x.shape[0] ** 10 ** 5 > 0",
    "prod((10 ** 4000, 10 ** 4000, 10 ** 4000, 10 ** 4000, 10 ** 4000)) > 0",
    "int('9' * 3000) > 0",
    "sqrt(10 ** 4000) > 0",
    "isclose(10 ** 4000, 1.0)",
    "2.0 ** 100000 > 0",
    "(-8) ** 0.5 > 0",
    "1 // 0 == 0",
    "max('a' * 5000, 'b' * 5000) == 'b'",
    "x.shape[0] in (" + ", ".join(str(i) for i in range(10, 3010)) + ")",
    "recurse(x) == 1",
    "not recurse(x)",
    "x.shape[0] + 'a' == 1",
    "~x.shape[0] == 1",
]


@guard_function
def recurse(x):
    return recurse(x)


@pytest.mark.parametrize("guard", HOSTILE_GUARDS)
def test_hostile_guard_ends_quickly_and_does_not_hold(guard):
    ns = pypm.loads(guarded(guard))
    t0 = time.perf_counter()
    matches = ns.P.match(Term("f", (Term("a", (), shape=(4, 8)),)))
    assert time.perf_counter() - t0 < SECONDS
    assert matches == []


def test_guard_limits_allow_ordinary_arithmetic():
    ns = pypm.loads(guarded("x.shape[0] * 2 ** 10 == 4096 and len('ab' * 100) == 200"))
    assert len(ns.P.match(Term("f", (Term("a", (), shape=(4, 8)),)))) == 1


# --- hypothesis: random texts ------------------------------------------------------------------

TOKENS = ["def", "P", "(", ")", ":", "\n", "\n    ", "return", "assert", "x", "f", "|", "&", "+",
          "-", "not", "and", "or", "[", "]", ",", "=", "==", ":=", "1", "10 ** 99", "'s'", "_",
          "fail", "if", "else", ".shape", "lambda", "\t", "\x00", "\ud800", "é", "#", "**", "."]


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_token_soup_is_total(tokens):
    outcome("".join(tokens))


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_is_total(text):
    outcome(text)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_are_total(data):
    outcome(data)


@SETTINGS
@given(st.integers(1, 3000), st.sampled_from(["f(", "(", "[", "-", "not ", "x | ", "x + "]))
def test_random_nesting_is_total(depth, opener):
    closer = {"f(": ")", "(": ")", "[": "]"}.get(opener, "")
    outcome(body(opener * depth + "x" + closer * depth))


# --- the table of known mistakes ---------------------------------------------------------------

@pytest.mark.parametrize("message", list(EXAMPLES))
def test_every_known_mistake_example_gives_its_message(message):
    for text in EXAMPLES[message]:
        err = outcome(text)
        assert isinstance(err, PatternSyntaxError) and err.message == message, (text, err)


@pytest.mark.parametrize("text,message", [
    ("def P(x):\n    return softmax(x, -1\n", "unclosed parenthesis '('"),
    ("def P(x):\n    return lambda y: y\n", "`lambda` is not part of the pattern language"),
    ("def P(x):\n    assert x.dtype = float16\n    return x\n", "`=` in a guard: compare with `==`"),
    ("def P(x):\n    return f(x, {1: 2})\n", "dicts and sets are not part of the pattern language"),
    ("def P(x):\n    while x:\n        return x\n", "`while` loops are not part of the pattern "
                                                    "language; use a recursive pattern"),
    ("def P(x)\n    return x\n", "expected `:` at the end of the `def` line"),
])
def test_common_mistakes_are_named(text, message):
    err = outcome(text)
    assert isinstance(err, PatternSyntaxError) and err.message == message
