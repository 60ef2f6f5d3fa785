"""@pattern, pypm.load/loads with imports, guards functions, and `pypm check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pypm
from pypm.lang.terms import Term, parse

DATA = Path(__file__).parent / "data" / "pkg"


# Patterns defined in Python: the later one calls the earlier one, and Chain calls itself.
@pypm.pattern
def Transposed(k):
    """k with its last two dimensions swapped."""
    return transpose(k, -2, -1) | transpose(k, -1, -2)  # noqa: F821


@pypm.pattern
def Scores(q, k):
    return q @ Transposed(k)


@pypm.pattern
def Chain(x):
    return x | neg(Chain(x))  # noqa: F821


def test_decorated_patterns_call_each_other_and_recurse():
    (m,) = pypm.match(Scores, parse("matmul(q, transpose(k, -1, -2))"))
    assert m.bindings == {"q": parse("q"), "k": parse("k")}
    assert [m["x"] for m in Chain.match(parse("neg(neg(a))"))] == [parse("neg(neg(a))"), parse("neg(a)"),
                                                                    parse("a")]
    assert Transposed.__doc__ == "k with its last two dimensions swapped."
    line = Path(__file__).read_text().splitlines().index("def Scores(q, k):") + 1
    assert Scores.span.file == __file__ and Scores.span.line == line


def test_decorated_pattern_errors_point_into_the_python_file():
    with pytest.raises(pypm.errors.ScopeError) as info:
        @pypm.pattern
        def Bad(x):
            return f(y)  # noqa: F821
    assert info.value.file == __file__
    assert "return f(y)" in info.value.render()


def test_forward_references_are_checked_at_first_use():
    @pypm.pattern
    def UsesLater(x):
        return f(Later(x))  # noqa: F821

    @pypm.pattern
    def Later(x):
        return g(x)  # noqa: F821

    assert len(UsesLater.match(parse("f(g(a))"))) == 1


def test_unknown_forward_reference_fails_at_first_use():
    @pypm.pattern
    def UsesMissing(x):
        return f(Missing(x))  # noqa: F821

    with pytest.raises(pypm.errors.UnknownPatternError, match="Missing"):
        UsesMissing.match(parse("f(a)"))


def test_pattern_objects_are_not_callable():
    with pytest.raises(pypm.PypmError, match="not a Python function"):
        Transposed(1)


def test_load_resolves_imports_beside_the_file():
    ns = pypm.load(DATA / "chain_user.pypm")
    t = parse("softmax(reshape(view(a, 1), 2), -1)")
    assert [m["x"] for m in ns.SoftmaxOfLayout.match(t)] == [
        parse("reshape(view(a, 1), 2)"), parse("view(a, 1)"), parse("a")]


def test_import_cycle_is_an_error():
    with pytest.raises(pypm.errors.PatternImportError, match="import cycle"):
        pypm.load(DATA / "cycle_a.pypm")


def test_missing_import_is_an_error_with_its_line():
    with pytest.raises(pypm.errors.PatternImportError) as info:
        pypm.loads("from nowhere import X\ndef P(x):\n    return X(x)\n")
    assert info.value.line == 1


def test_registered_guard_function():
    @pypm.guard_function
    def divisible_by(a, b):
        return a % b == 0

    ns = pypm.loads("def P(x):\n    assert divisible_by(x.shape[-1], 64)\n    return f(x)\n")
    assert len(ns.P.match(Term("f", (Term("x", shape=(2, 128)),)))) == 1
    assert ns.P.match(Term("f", (Term("x", shape=(2, 96)),))) == []


def test_guard_that_raises_is_false_not_a_crash():
    ns = pypm.loads("def P(x):\n    assert x.shape[5] == 1\n    return f(x)\n")
    assert ns.P.match(Term("f", (Term("x", shape=(2,)),))) == []
    assert ns.P.match(Term("f", (3,))) == []  # x is a literal: it has no shape


def test_guard_language():
    ns = pypm.loads('''
def P(x, s):
    B, S, D = x.shape
    assert x.dtype == float16 and x.ndim == 3 and D in (64, 128) and not B > 8
    assert isclose(s, 1 / sqrt(D)) and max(B, S) <= 4096 and x.shape[1:] == (S, D)
    return mul(x, s)
''')
    import torch

    x = Term("x", shape=(2, 16, 64), dtype=torch.float16)
    assert len(ns.P.match(Term("mul", (x, 0.125)))) == 1
    assert ns.P.match(Term("mul", (x, 0.1))) == []
    x32 = Term("x", shape=(2, 16, 64), dtype=torch.float32)
    assert ns.P.match(Term("mul", (x32, 0.125))) == []


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pypm.cli", *args], capture_output=True, text=True)


def test_pypm_check_good_file_prints_a_summary():
    r = run_cli("check", str(DATA / "layout.pypm"), str(DATA / "chain_user.pypm"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{DATA / 'layout.pypm'}: ok, 1 pattern (Layout)",
                                     f"{DATA / 'chain_user.pypm'}: ok, 1 pattern (SoftmaxOfLayout)"]


def test_pypm_check_bad_file_prints_every_error_and_exits_1():
    r = run_cli("check", str(DATA / "bad.pypm"))
    assert r.returncode == 1
    assert "bad.pypm:5:14: scope error in pattern Bad: unknown variable `y`" in r.stderr
    assert "left recursion in pattern Loop: Loop → Loop at line 8" in r.stderr
    assert "Traceback" not in r.stderr


def test_pypm_check_missing_file():
    r = run_cli("check", "no/such/file.pypm")
    assert r.returncode == 1 and "no pattern file" in r.stderr
