"""Loading a pattern never executes code from it: Python-looking payloads in patterns and guards
are rejected or inert (matched as operator names / strings, never called)."""

from __future__ import annotations

import os
import subprocess

import pytest

import pypm
from pypm.lang.terms import Term


@pytest.fixture
def no_exec(monkeypatch):
    """Fail loudly if anything tries to run a shell command while patterns load and match."""
    calls: list[str] = []

    def refuse(name):
        def f(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called while loading or matching a pattern")
        return f

    monkeypatch.setattr(os, "system", refuse("os.system"))
    monkeypatch.setattr(os, "popen", refuse("os.popen"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
    return calls


PAYLOADS = [
    # in a pattern: an operator named __import__, never called
    "def P(x):\n    return __import__('os').system('touch /tmp/pypm-pwned')\n",
    # in a guard: calls are looked up in a fixed table
    "def P(x):\n    assert __import__('os').system('touch /tmp/pypm-pwned') == 0\n    return f(x)\n",
    "def P(x):\n    assert eval('1') == 1\n    return f(x)\n",
    "def P(x):\n    assert x.__class__.__bases__ == 1\n    return f(x)\n",
    "def P(x):\n    assert exec('import os') is None\n    return f(x)\n",
    "def P(x):\n    assert open('/etc/passwd') == 1\n    return f(x)\n",
    "import os\ndef P(x):\n    return f(x)\n",
    "from os import system\ndef P(x):\n    return f(x)\n",
]


@pytest.mark.parametrize("text", PAYLOADS)
def test_payloads_are_rejected_or_inert(text, no_exec, tmp_path):
    marker = tmp_path / "pwned"
    text = text.replace("/tmp/pypm-pwned", str(marker))
    try:
        ns = pypm.loads(text)
    except pypm.PypmError:
        pass  # rejected with a proper error
    else:
        for p in ns:  # inert: matching treats the payload as plain data
            p.match(Term("f", (Term("x"),)))
            p.match(Term("__import__", ("os",)))
    assert not marker.exists()
    assert no_exec == []


def test_pattern_decorator_never_runs_the_body(capsys):
    with pytest.raises(pypm.PypmError, match="unknown guard function `print`"):
        @pypm.pattern
        def Soft(x):
            assert print("ran") is None  # a guard calling an unknown function: never called
            return softmax(x, -1)  # noqa: F821 - names in patterns are not Python names

    assert capsys.readouterr().out == ""


def test_pattern_decorator_rejects_statements_without_running_them(capsys):
    with pytest.raises(pypm.PypmError, match="does nothing"):
        @pypm.pattern
        def Soft(x):
            print("ran")  # an expression statement: rejected, never executed
            return softmax(x, -1)  # noqa: F821
    assert capsys.readouterr().out == ""
