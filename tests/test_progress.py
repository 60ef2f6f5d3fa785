"""pypm.progress: ``[n/total] label`` lines on a terminal, when forced, or not at all."""

from __future__ import annotations

import io

from pypm.progress import Progress, progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("PYPM_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress(3, "work", stream=out) as bar:
        for i in range(3):
            bar.advance(label=f"step {i}")
    assert out.getvalue() == ""


def test_final_line_only(monkeypatch):
    monkeypatch.delenv("PYPM_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress(2, "work", stream=out, final=True) as bar:
        bar.advance()
        bar.advance(label="done")
    assert out.getvalue() == "[2/2] done\n"


def test_forced_prints_lines_and_always_the_last(monkeypatch):
    monkeypatch.delenv("PYPM_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress(3, "start", stream=out, force=True, interval=3600) as bar:
        bar.advance(label="a")  # within the interval: not drawn
        bar.advance(label="b")
        bar.advance(label="c")  # the last step is always drawn
    assert out.getvalue().splitlines() == ["[0/3] start", "[3/3] c"]


def test_environment_forces_or_disables(monkeypatch):
    monkeypatch.setenv("PYPM_PROGRESS", "1")
    out = io.StringIO()
    for _ in progress(range(2), "items", stream=out, interval=0):
        pass
    assert out.getvalue().splitlines() == ["[0/2] items", "[1/2] items", "[2/2] items"]
    monkeypatch.setenv("PYPM_PROGRESS", "0")
    tty = Tty()
    with Progress(1, "x", stream=tty) as bar:
        bar.advance()
    assert tty.getvalue() == ""


def test_terminal_redraws_in_place(monkeypatch):
    monkeypatch.delenv("PYPM_PROGRESS", raising=False)
    tty = Tty()
    with Progress(None, "a longer label", stream=tty, interval=0) as bar:
        bar.advance(label="short")
    text = tty.getvalue()
    assert text.startswith("\r[0] a longer label") and text.endswith("\n")
    assert "\r[1] short" in text and "\n" not in text[:-1]
