"""``pypm conformance``: run the conformance properties on generated cases and summarise.

Each property runs under hypothesis with ``--examples N`` cases (split over ``--jobs J``
processes, job j seeded ``S + j``). A failure is shrunk by hypothesis and printed as surface
syntax plus a term, ready to paste into a test; the command then exits 1. The summary table
gives, per property, the cases run, how many had matches, the largest term and program, the
time, and the distribution of result counts (so that a generator that only ever finds zero
matches cannot pass unnoticed). ``--mutants`` runs the mutation check instead.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from . import properties as props
from .generators import MAIN, Case, case_size, cases, ill_formed_programs, programs
from .surface import case_source, program_source

# ---------------------------------------------------------------------------------------------
# One property run


@dataclass
class Stats:
    """What one property saw: case count, result-count histogram, largest sizes, time."""

    cases: int = 0
    with_matches: int = 0
    histogram: Counter = field(default_factory=Counter)
    largest_term: int = 0
    largest_program: int = 0
    seconds: float = 0.0
    failure: str | None = None

    def add(self, n_results: int | None, term: int, program: int) -> None:
        self.cases += 1
        if n_results is not None:
            self.with_matches += n_results > 0
            self.histogram[_bucket(n_results)] += 1
        self.largest_term = max(self.largest_term, term)
        self.largest_program = max(self.largest_program, program)

    def merge(self, other: Stats) -> None:
        self.cases += other.cases
        self.with_matches += other.with_matches
        self.histogram.update(other.histogram)
        self.largest_term = max(self.largest_term, other.largest_term)
        self.largest_program = max(self.largest_program, other.largest_program)
        self.seconds = max(self.seconds, other.seconds)
        self.failure = self.failure or other.failure


def _bucket(n: int) -> str:
    return str(n) if n < 3 else "3-9" if n < 10 else "10+"


BUCKETS = ("0", "1", "2", "3-9", "10+")


def _case_check(check: Callable[[Case], int | None]) -> tuple[Any, Callable[[Any, Stats], None]]:
    def run(case: Case, stats: Stats) -> None:
        n = check(case)
        stats.add(n, *case_size(case))
    return cases(), run


def _soundness(interpret: Any) -> Callable[[Case], int]:
    return lambda case: len(props.soundness(case, interpret or props.real_interpret))


def _completeness(interpret: Any) -> Callable[[Case], int]:
    def check(case: Case) -> int:
        found = props.results(case, interpret or props.real_interpret)
        props.completeness(case, found=found)
        return len(found)
    return check


def _terminates(interpret: Any) -> Callable[[Case], int | None]:
    def check(case: Case) -> int | None:
        props.terminates(case, interpret)
        props.declarative_terminates(case)
        return None
    return check


def _accepted_terminates(case: Case, stats: Stats) -> None:
    props.accepted_terminates(case)
    stats.add(None, *case_size(case))


def _placement(case: Case, stats: Stats) -> None:
    stats.add(props.placement_preserves(case), *case_size(case))


def _accepts(program: Any, stats: Stats) -> None:
    props.accepted(program)
    from pypm.lang.syntax import size

    stats.add(None, 0, sum(size(d.body) for d in program.values()))


def _rejects(drawn: Any, stats: Stats) -> None:
    program, kind = drawn
    props.rejected(program, kind)
    from pypm.lang.syntax import size

    stats.add(None, 0, sum(size(d.body) for d in program.values()))


def _desugar(case: Case, stats: Stats) -> None:
    from pypm.lang.syntax import size
    from pypm.lang.terms import term_size

    from .desugar import agree

    n = agree(case)
    stats.add(n, term_size(case.value), sum(size(d.body) for d in case.core().values()))


def property_table(interpret: Any = None) -> dict[str, tuple[Any, Callable[[Any, Stats], None]]]:
    """Property name → (strategy, check(drawn, stats)). ``interpret`` replaces the interpreter
    (for mutants); the checker properties then do not apply."""
    table = {
        "soundness": _case_check(_soundness(interpret)),
        "completeness": _case_check(_completeness(interpret)),
        "termination": _case_check(_terminates(interpret)),
    }
    if interpret is None:
        from .desugar import desugar_cases

        table["wf-accepts"] = (programs(), _accepts)
        table["wf-rejects"] = (ill_formed_programs(), _rejects)
        table["desugaring"] = (desugar_cases(), _desugar)
        table["wf-terminates"] = (cases(loose=True), _accepted_terminates)
        table["placement"] = (cases(), _placement)
    return table


def _describe(drawn: Any) -> str:
    if isinstance(drawn, Case):
        return case_source(drawn.program, drawn.value, drawn.sigma, MAIN)
    if isinstance(drawn, tuple) and len(drawn) == 2 and isinstance(drawn[0], dict):
        return f"# expected: {drawn[1]}\n" + program_source(drawn[0])
    if isinstance(drawn, dict):
        return program_source(drawn)
    describe = getattr(drawn, "source", None)  # a desugaring case: its surface text
    return describe() if callable(describe) else repr(drawn)


def run_property(name: str, strategy: Any, check: Callable[[Any, Stats], None], examples: int,
                 seed: int | None, tick: Callable[[], None] | None = None,
                 derandomize: bool = False) -> Stats:
    """Run one property on ``examples`` generated cases; a failure is shrunk and described."""
    stats = Stats()
    last_failure: list[tuple[Any, BaseException]] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink))
    @given(strategy)
    def prop(drawn: Any) -> None:
        try:
            check(drawn, stats)
        except Exception as e:
            last_failure.append((drawn, e))
            raise
        finally:
            if tick is not None:
                tick()

    if seed is not None and not derandomize:
        prop = hypothesis_seed(seed)(prop)
    start = time.perf_counter()
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20000))
    try:
        prop()
    except Exception as e:
        drawn, err = last_failure[-1] if last_failure else (None, e)
        stats.failure = (f"property {name} fails: {type(err).__name__}: {err}\n\n"
                         f"{_describe(drawn) if drawn is not None else ''}")
    finally:
        sys.setrecursionlimit(old_limit)
    stats.seconds = time.perf_counter() - start
    return stats


# ---------------------------------------------------------------------------------------------
# Jobs and progress


class _Batched:
    """Progress ticks sent to the parent process in batches (one message per 25 cases)."""

    def __init__(self, queue: Any, every: int = 25):
        self.queue, self.every, self.count = queue, every, 0

    def put(self, n: int) -> None:
        self.count += n
        if self.count >= self.every:
            self.queue.put(self.count)
            self.count = 0

    def flush(self) -> None:
        if self.count:
            self.queue.put(self.count)
            self.count = 0


def _job(args: tuple[str, int, int | None, Any, bool]) -> Stats:
    name, examples, seed, queue, mutant = args
    batched = _Batched(queue) if queue is not None else None
    try:
        if mutant:
            return _kill(name, examples, seed, batched)
        strategy, check = property_table()[name]
        return run_property(name, strategy, check, examples, seed,
                            tick=(lambda: batched.put(1)) if batched is not None else None)
    finally:
        if batched is not None:
            batched.flush()


def _mutant_interpreter(name: str) -> Any:
    from .mutants import MUTANTS, interpreter

    return interpreter(next(m for m in MUTANTS if m.name == name))


def _all_case_properties(interpret: Any) -> Callable[[Case, Stats], None]:
    """Soundness, completeness and termination on one case; the failure names the property."""
    def check(case: Case, stats: Stats) -> None:
        try:
            found = props.soundness(case, interpret)
        except props.PropertyFailure as e:
            raise props.PropertyFailure(f"soundness: {e}") from e
        try:
            props.completeness(case, found=found)
        except props.PropertyFailure as e:
            raise props.PropertyFailure(f"completeness: {e}") from e
        try:
            props.terminates(case, interpret)
        except props.PropertyFailure as e:
            raise props.PropertyFailure(f"termination: {e}") from e
        stats.add(len(found), *case_size(case))
    return check


def _kill(name: str, examples: int, seed: int | None, queue: Any = None,
          derandomize: bool = False) -> Stats:
    """Run the case properties against one mutant; ``failure`` is set when one of them fails
    (the mutant is killed), and starts with the name of that property."""
    check = _all_case_properties(_mutant_interpreter(name))
    stats = run_property(name, cases(), check, examples, seed,
                         tick=(lambda: queue.put(1)) if queue is not None else None,
                         derandomize=derandomize)
    if stats.failure:
        stats.failure = stats.failure.split("PropertyFailure: ", 1)[-1]
    return stats


def kill(name: str, examples: int = 300, seed: int | None = 0, derandomize: bool = True) -> Stats:
    """The mutation check for one mutant: ``failure`` is set when the properties kill it."""
    return _kill(name, examples, seed, None, derandomize)


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled, self.done = total, label, enabled, 0
        self.start = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - getattr(self, "_drawn", 0.0) > 0.1 or self.done >= self.total):
            self._drawn = now
            frac = min(1.0, self.done / max(self.total, 1))
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label:<14} [{bar:<30}] {self.done}/{self.total} "
                             f"{time.perf_counter() - self.start:6.1f}s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _run_parallel(name: str, examples: int, seed: int, jobs: int, mutant: bool,
                  progress: bool) -> Stats:
    per_job = [examples // jobs + (1 if j < examples % jobs else 0) for j in range(jobs)]
    bar = _Progress(examples, name, progress)
    total = Stats()
    if jobs == 1:
        stats = _job((name, examples, seed, _LocalQueue(bar), mutant))
        total.merge(stats)
        bar.close()
        return total
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Manager() as manager:
        queue = manager.Queue()
        with ctx.Pool(jobs) as pool:
            pending = pool.map_async(_job, [(name, n, seed + j, queue, mutant)
                                            for j, n in enumerate(per_job) if n > 0])
            while not pending.ready():
                pending.wait(0.2)
                while not queue.empty():
                    bar.advance(queue.get())
            while not queue.empty():
                bar.advance(queue.get())
            for stats in pending.get():
                total.merge(stats)
    bar.close()
    return total


class _LocalQueue:
    def __init__(self, bar: _Progress):
        self.bar = bar

    def put(self, n: int) -> None:
        self.bar.advance(n)


# ---------------------------------------------------------------------------------------------
# The command


def _table(rows: list[tuple[str, Stats]]) -> str:
    head = (f"{'property':<14} {'cases':>7} {'matched':>8} {'max term':>8} {'max prog':>8} "
            f"{'time':>8}  results 0/1/2/3-9/10+   status")
    lines = [head, "-" * len(head)]
    for name, s in rows:
        hist = "/".join(str(s.histogram.get(b, 0)) for b in BUCKETS) if s.histogram else "-"
        matched = str(s.with_matches) if s.histogram else "-"
        status = "FAIL" if s.failure else "ok"
        lines.append(f"{name:<14} {s.cases:>7} {matched:>8} {s.largest_term:>8} "
                     f"{s.largest_program:>8} {s.seconds:>7.1f}s  {hist:<22} {status}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``pypm conformance [--examples N] [--seed S] [--jobs J] [--property P] [--mutants]``."""
    parser = argparse.ArgumentParser(prog="pypm conformance",
                                     description="Check the interpreter against the declarative "
                                                 "semantics on generated programs and terms.")
    parser.add_argument("--examples", type=int, default=2000, help="cases per property (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (job j uses S + j)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--property", action="append", default=None,
                        help="run only this property (repeatable)")
    parser.add_argument("--mutants", action="store_true",
                        help="run the mutation check: every mutant must be killed")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none when stderr is not a terminal)")
    args = parser.parse_args(argv)
    progress = not args.no_progress and sys.stderr.isatty()
    started = time.perf_counter()
    rows: list[tuple[str, Stats]] = []
    if args.mutants:
        from .mutants import MUTANTS

        names = [m.name for m in MUTANTS]
        killed = 0
        print(f"{'mutant':<34} {'killed by':<14} {'cases':>6}  description")
        for m in MUTANTS:
            s = _run_parallel(m.name, args.examples, args.seed, 1, True, progress)
            by = s.failure.split(":", 1)[0] if s.failure else "-"
            killed += s.failure is not None
            print(f"{m.name:<34} {by if s.failure else 'SURVIVED':<14} {s.cases:>6}  {m.description}")
        print(f"\n{killed}/{len(names)} mutants killed in {time.perf_counter() - started:.1f}s")
        return 0 if killed == len(names) else 1
    names = args.property or list(property_table())
    for name in names:
        s = _run_parallel(name, args.examples, args.seed, max(1, args.jobs), False, progress)
        rows.append((name, s))
    print(_table(rows))
    print(f"\ntotal {sum(s.cases for _, s in rows)} cases in {time.perf_counter() - started:.1f}s "
          f"(--examples {args.examples} --seed {args.seed} --jobs {args.jobs})")
    failures = [s.failure for _, s in rows if s.failure]
    for f in failures:
        print("\n" + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
