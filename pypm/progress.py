"""Progress lines for long commands, with the standard library only.

    with Progress(total=len(graphs), label="rewriting") as bar:
        for gm in graphs:
            ...
            bar.advance(label=f"graph {i}")

On a terminal (stderr is a TTY) the line ``[12/100] label`` is redrawn in place and ends with a
newline when the block exits. Elsewhere (a pipe, a CI log) nothing is printed, unless the bar is
forced: ``force=True`` or ``PYPM_PROGRESS=1`` print one line per update (at most one every
``interval`` seconds, and always the last one); ``PYPM_PROGRESS=0`` turns every bar off, even
on a terminal. ``final=True`` prints only the last line when the bar is not live (a summary
for logs).

:func:`progress` wraps an iterable: ``for x in progress(items, label="cases"): ...``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

ENV_VAR = "PYPM_PROGRESS"


def _env_setting() -> bool | None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("1", "true", "yes", "on", "always"):
        return True
    if value in ("0", "false", "no", "off", "never"):
        return False
    return None


class Progress:
    """A progress line on ``stream`` (default: stderr); see the module docstring.

    ``total`` may be None (unknown: ``[12] label``) and may be raised later with
    :meth:`set_total`. ``mode`` is ``"tty"`` (redrawn in place), ``"lines"`` (one line per
    update) or ``"off"``, chosen when the bar is made."""

    def __init__(self, total: int | None = None, label: str = "", *, stream: IO[str] | None = None,
                 force: bool | None = None, final: bool = False, interval: float = 0.1):
        self.total = total
        self.label = label
        self.count = 0
        self.stream = stream if stream is not None else sys.stderr
        self.final = final
        self.interval = interval
        self._last_draw = 0.0
        self._width = 0
        self._last_line: str | None = None
        self._closed = False
        setting = _env_setting()
        if force is None:
            force = setting
        if force is False:
            self.mode = "off"
        elif _isatty(self.stream):
            self.mode = "tty"
        elif force:
            self.mode = "lines"
        else:
            self.mode = "off"

    # -- the line ------------------------------------------------------------------------

    def line(self) -> str:
        """The current line, ``[count/total] label``."""
        counter = f"[{self.count}/{self.total}]" if self.total is not None else f"[{self.count}]"
        return f"{counter} {self.label}".rstrip()

    def _draw(self, force: bool = False) -> None:
        if self.mode == "off":
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        text = self._last_line = self.line()
        if self.mode == "tty":
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    # -- updates -------------------------------------------------------------------------

    def advance(self, n: int = 1, label: str | None = None) -> None:
        """``n`` more steps done; ``label`` (when given) names what comes next or what was done."""
        self.count += n
        if label is not None:
            self.label = label
        last = self.total is not None and self.count >= self.total
        self._draw(force=last)

    def set_label(self, label: str) -> None:
        """Change the label without counting a step (drawn when the interval allows)."""
        self.label = label
        self._draw()

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._draw()

    def close(self) -> None:
        """End the line: a newline on a terminal; the last line when forced or ``final``."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "tty":
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        elif self.mode == "lines":
            if self.line() != self._last_line:
                self._draw(force=True)
        elif self.final:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(items: Iterable[T], label: str = "", *, total: int | None = None, **kwargs: Any) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` bar (``total`` from ``len(items)`` when it has
    one)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, label, **kwargs) as bar:
        for item in items:
            yield item
            bar.advance()


__all__ = ["ENV_VAR", "Progress", "progress"]
