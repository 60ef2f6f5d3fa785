"""Golden tests: the messages of common mistakes, pinned (file:line:col, source line, caret).

Regenerate after a deliberate change of wording with ``PYPM_UPDATE_GOLDEN=1 pytest tests/test_errors.py``
and review the diff of ``tests/golden/errors.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pypm
from pypm import errors

GOLDEN = Path(__file__).parent / "golden" / "errors.txt"

MISTAKES = {
 "unclosed_paren": "def P(x):\n    return softmax(x, -1\n",
 "missing_colon": "def P(x)\n    return x\n",
 "no_return": "def P(x):\n    assert x.ndim == 4\n",
 "for_loop": "def P(x):\n    for i in x:\n        return i\n",
 "unknown_variable": "def P(x):\n    return add(x, y)\n",
 "unknown_pattern": ("def P(x):\n    return Transposd(x)\n"
                     "def Transposed(k):\n    return transpose(k, -2, -1)\n"),
 "wrong_arity": "def P(x):\n    return Scaled(x)\ndef Scaled(s, c):\n    return s / c\n",
 "left_recursion": "def Layout(x):\n    return x | Layout(x)\n",
 "mutual_left_recursion": "def A(x):\n    return B(x) | f(x)\ndef B(x):\n    return A(x)\n",
 "guard_unbound": "def P(x, d):\n    assert d == 64\n    return f(x)\n",
 "guard_unbound_in_alternative": "def P(x, y):\n    assert y.ndim == 2\n    return f(x) | g(x, y)\n",
 "unused_local": "def P(x):\n    s = f(x)\n    return g(x)\n",
 "local_twice": "def P(x):\n    s = f(x)\n    s = g(x)\n    return h(s)\n",
 "unknown_guard_function": "def P(x):\n    assert lenn(x.shape) == 2\n    return f(x)\n",
 "forbidden_attribute": "def P(x):\n    assert x.__class__ == 1\n    return f(x)\n",
 "unknown_keyword": "def P(x):\n    return softmax(x, axis=-1)\n",
 "comparison_in_pattern": "def P(x, y):\n    return x == y\n",
 "duplicate_parameter": "def P(x, x):\n    return x\n",
 "duplicate_definition": "def P(x):\n    return x\ndef P(y):\n    return y\n",
 "statement_after_return": "def P(x):\n    return x\n    assert x.ndim == 2\n",
 "bad_else": "def P(x):\n    return f(x) if x.ndim == 2 else g(x)\n",
 "tuple_with_variable": "def P(x, n):\n    return view(x, (n, -1))\n",
 "dimension_in_pattern": "def P(q):\n    B, S, D = q.shape\n    return view(q, D)\n",
 "unterminated_string": "def P(x):\n    return to(x, 'cuda)\n",
 "unpack_non_shape": "def P(x):\n    a, b = x\n    return x\n",
 "unexpected_indent": "def P(x):\n    return x\n      y\n",
 "opvar_not_annotated_unknown": "def P(x):\n    return g(x) | f\n",
 "call_arg_not_bound": "def P(x):\n    return Maybe(reshape(x, _))\ndef Maybe(a):\n    return f(a) | g(_)\n",
 "then_unbound_local": "def P(x, y):\n    s = f(x)\n    return g(x) | h(s)\n",
}

EXPECTED_CLASS = {
    'unclosed_paren': errors.PatternSyntaxError,
    'missing_colon': errors.PatternSyntaxError,
    'no_return': errors.PatternSyntaxError,
    'for_loop': errors.PatternSyntaxError,
    'unknown_variable': errors.ScopeError,
    'unknown_pattern': errors.UnknownPatternError,
    'wrong_arity': errors.ArityError,
    'left_recursion': errors.LeftRecursionError,
    'mutual_left_recursion': errors.LeftRecursionError,
    'guard_unbound': errors.UnboundError,
    'guard_unbound_in_alternative': errors.UnboundError,
    'unused_local': errors.ScopeError,
    'local_twice': errors.ScopeError,
    'unknown_guard_function': errors.GuardError,
    'forbidden_attribute': errors.GuardError,
    'unknown_keyword': errors.ArityError,
    'comparison_in_pattern': errors.PatternSyntaxError,
    'duplicate_parameter': errors.ScopeError,
    'duplicate_definition': errors.ScopeError,
    'statement_after_return': errors.PatternSyntaxError,
    'bad_else': errors.PatternSyntaxError,
    'tuple_with_variable': errors.PatternSyntaxError,
    'dimension_in_pattern': errors.ScopeError,
    'unterminated_string': errors.PatternSyntaxError,
    'unpack_non_shape': errors.PatternSyntaxError,
    'unexpected_indent': errors.PatternSyntaxError,
    'opvar_not_annotated_unknown': errors.ScopeError,
    'call_arg_not_bound': errors.UnboundError,
    'then_unbound_local': errors.UnboundError,
}


def render(name: str) -> str:
    with pytest.raises(pypm.PypmError) as info:
        pypm.loads(MISTAKES[name], filename=f"{name}.pypm")
    assert type(info.value) is EXPECTED_CLASS[name]
    return info.value.render()


def test_at_least_fifteen_distinct_mistakes_are_pinned():
    assert len(MISTAKES) >= 15
    assert len({render(n).split(": ", 2)[2] for n in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_error_names_file_line_column_and_shows_the_line_with_a_caret(name):
    with pytest.raises(pypm.PypmError) as info:
        pypm.loads(MISTAKES[name], filename=f"{name}.pypm")
    err = info.value
    assert err.file == f"{name}.pypm"
    assert err.line is not None and err.col is not None
    lines = err.render().splitlines()
    assert lines[0].startswith(f"{name}.pypm:{err.line}:{err.col}: ")
    source_line = MISTAKES[name].splitlines()[err.line - 1]
    assert lines[1] == "    " + source_line
    assert lines[2].strip().startswith("^") and lines[2].index("^") == 4 + err.col - 1


def test_messages_match_the_golden_file():
    got = "".join(f"--- {name}\n{render(name)}\n" for name in sorted(MISTAKES))
    if os.environ.get("PYPM_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()
