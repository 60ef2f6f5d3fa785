"""The extracted Coq interpreter as an oracle: ``pypm conformance --oracle``.

``coq/extract/pypm_interp`` (built by ``make -C coq``) is the interpreter of ``coq/Interp.v``
with regions (``interp_r`` of ``coq/Regions.v``), extracted to OCaml: proved sound and complete
for §3, and exact for the result list of §4. Each case is sent to it as one line
(:mod:`.coq_cases`) and its answer, the result list with every result's region, must equal,
as text, the list of the interpreter (:mod:`pypm.lang.match`) and of the compiled matcher
(:mod:`pypm.lang.fastmatch`, calls inlined and by frames). The Coq checkers must also accept
every generated program and the fuel bound of §6 must suffice.

Cases outside the Coq model (float or dtype literals) are skipped and counted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from .coq_cases import Unsupported, rcase_line, region_results
from .properties import PropertyFailure, System, real_system

DRIVER = Path(__file__).resolve().parent.parent / "coq" / "extract" / "pypm_interp"


class OracleMissing(RuntimeError):
    """The extracted interpreter is not built."""


class Driver:
    """The extracted interpreter, kept running: one case per line in, one answer per line out."""

    def __init__(self, path: Path = DRIVER):
        if not path.exists():
            raise OracleMissing(f"{path} is not built: run `make -C coq` (needs coqc and ocamlfind)")
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def ask(self, line: str) -> tuple[str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().rstrip("\n")
        verdict, _, result = answer.partition(" ")
        if verdict not in ("wf", "notwf"):
            raise PropertyFailure(f"the driver answers {answer!r} to {line}")
        return verdict, result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


_driver: Driver | None = None


def driver() -> Driver:
    """One driver per process."""
    global _driver
    if _driver is None or _driver.proc.poll() is not None:
        _driver = Driver()
    return _driver


def agrees(program: Any, pattern: Any, value: Any, sigma: dict[str, Any],
           system: System | None = None) -> int | None:
    """The extracted interpreter, match.py and fastmatch (inlined, frames) give the same result
    list, regions included. Returns the number of results, or None when the case is outside the
    Coq model."""
    system = system or real_system()
    try:
        line = rcase_line(program, pattern, value, sigma)
    except Unsupported:
        return None
    verdict, coq = driver().ask(line)
    if verdict != "wf":
        raise PropertyFailure(f"the Coq checkers reject a generated program: {line}")
    if coq == "outoffuel":
        raise PropertyFailure(f"the extracted interpreter runs out of the fuel bound of §6: {line}")
    found = [(dict(m.bindings), m.region) for m in system.interpret(program, pattern, value, dict(sigma))]
    py = region_results(found)
    if py != coq:
        raise PropertyFailure(f"match.py differs from the extracted interpreter\n  coq:    {coq}\n"
                              f"  python: {py}\n  case:   {line}")
    fm = system.fastmatch
    for inline in (True, False):
        m = fm.Compiler(program, inline=inline).compile(pattern)
        fast = region_results(fm.all_results(m, value, dict(sigma)))
        if fast != coq:
            how = "inlined" if inline else "frames"
            raise PropertyFailure(f"fastmatch ({how}) differs from the extracted interpreter\n"
                                  f"  coq:    {coq}\n  fast:   {fast}\n  case:   {line}")
    return len(found)


__all__ = ["DRIVER", "Driver", "OracleMissing", "agrees", "driver"]
