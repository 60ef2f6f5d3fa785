"""Bad input never crashes with a bare traceback: random text and randomly mutated valid programs
given to ``pypm.loads`` either load or raise a ``PypmError`` (never another exception)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pypm

EXAMPLES = int(os.environ.get("PYPM_FUZZ_EXAMPLES", "600"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

VALID = [
    '''
def Attention(q, k, v, scale):
    """Softmax attention, scaled by multiplying or dividing."""
    scores = q @ Transposed(k)
    assert q.shape[-1] == k.shape[-1]
    return softmax(Scaled(scores, scale), dim=-1) @ v

def Transposed(k):
    return transpose(k, -2, -1) | transpose(k, -1, -2)

def Scaled(s, c):
    return s / c | s * c | mul(c, s)
''',
    '''
def Layout(x):
    """x behind any chain of layout-only ops (recursive, guarded)."""
    return x | view(Layout(x)) | reshape(Layout(x)) | expand(Layout(x)) | contiguous(Layout(x))

def Act(f: Op, x):
    B, S, D = x.shape
    assert D % 64 == 0 and x.dtype in (float16, bfloat16)
    return f(Layout(x)) if f in ("relu", "gelu") else fail
''',
    '''
def RMS(x, w, eps):
    var = mean(pow(x, 2), -1, True)
    return mul(mul(x, rsqrt(add(var, eps))), w) | mul(w, (y := mul(x, rsqrt(add(var, eps))))) & _
''',
]

TOKENS = ["def", "return", "assert", "(", ")", ":", ",", "|", "&", "@", "/", "*", "+", "-", "==",
          "=", ":=", ".", "[", "]", "_", "fail", "x", "P", "f", "q.shape", "1", "-1", "'s'", "\n",
          "\n    ", "    ", "if", "else", "not", "and", "or", "in", "exists", "then", "None", "#",
          "torch.float16", "**", "//", "\"\"\"", "Op", "import", "from", "lambda", "for"]


def _loads_or_pypm_error(text: str) -> None:
    try:
        pypm.loads(text)
    except pypm.PypmError as e:
        rendered = e.render()  # rendering must not fail either
        assert rendered and e.message
    # any other exception fails the test with its traceback


@SETTINGS
@given(st.text(max_size=200))
def test_random_text(text):
    _loads_or_pypm_error(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_soup(tokens):
    _loads_or_pypm_error(" ".join(tokens))


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "swap-lines", "dup-line"]))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        if kind == "delete":
            j = draw(st.integers(i, min(len(text), i + 8)))
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i + 1:]
        else:
            lines = text.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if kind == "swap-lines":
                lines[a], lines[b] = lines[b], lines[a]
            else:
                lines.insert(b, lines[a])
            text = "\n".join(lines)
    return text


@SETTINGS
@given(mutated())
def test_mutated_valid_programs(text):
    _loads_or_pypm_error(text)


def test_valid_programs_load():
    for text in VALID:
        assert len(list(pypm.loads(text))) >= 1
