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
    skipped: int = 0  # oracle cases outside the Coq model
    tried: int = 0  # checks run, the failing one included (cases to kill a mutant)

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
        self.skipped += other.skipped
        self.tried += other.tried


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


def _order(case: Case, stats: Stats) -> None:
    stats.add(props.order(case), *case_size(case))


def _equality(triple: Any, stats: Stats) -> None:
    from pypm.lang.terms import values_equal

    from .laws import equality_laws

    equality_laws(triple, values_equal)
    stats.add(None, 0, 0)


def _guards(gc: Any, stats: Stats) -> None:
    from pypm.lang import guards

    from .laws import guard_laws

    guard_laws(gc, guards)
    stats.add(None, 0, 0)


def _oracle(case: Case, stats: Stats) -> None:
    from .oracle import agrees

    n = agrees(case.program, case.pattern, case.value, case.sigma)
    if n is None:
        stats.skipped += 1
    stats.add(n, *case_size(case))


def _oracle_guarded(seed: int, stats: Stats) -> None:
    from pypm.lang.syntax import size
    from pypm.lang.terms import term_size

    from .coq_cases import generate_cases
    from .oracle import agrees

    c = generate_cases(1, seed)[0]
    n = agrees(c.program, c.pattern, c.value, c.sigma)
    if n is None:
        stats.skipped += 1
    stats.add(n, term_size(c.value), sum(size(d.body) for d in c.program.values()) + size(c.pattern))


def oracle_table() -> dict[str, tuple[Any, Callable[[Any, Stats], None]]]:
    """The differential test against the extracted Coq interpreter: conformance cases, and the
    cases of the Coq test's own generator (guarded as coq/Totality.v counts it)."""
    from hypothesis import strategies as st

    return {"oracle": (cases(), _oracle), "oracle-guarded": (st.integers(0, 2 ** 32 - 1), _oracle_guarded)}


def property_table(interpret: Any = None) -> dict[str, tuple[Any, Callable[[Any, Stats], None]]]:
    """Property name → (strategy, check(drawn, stats)). ``interpret`` replaces the interpreter
    (for mutants); the other properties then do not apply."""
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
        from .laws import guard_cases, value_triples

        table["order"] = (cases(), _order)
        table["equality"] = (value_triples(), _equality)
        table["guards"] = (guard_cases(), _guards)
    return table


def _describe(drawn: Any) -> str:
    from .laws import GuardCase

    if isinstance(drawn, GuardCase):
        return drawn.source()
    if isinstance(drawn, tuple) and len(drawn) == 3 and not isinstance(drawn[0], dict):  # values
        from pypm.lang.terms import show_value

        return "# values: " + ", ".join(f"{show_value(v)} ({type(v).__name__})" for v in drawn)
    if isinstance(drawn, tuple) and drawn and not (len(drawn) == 2 and isinstance(drawn[0], dict)):
        return "\n\n".join(_describe(d) for d in drawn)  # a mutant family's tuple of cases
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
                 derandomize: bool = False, shrink: bool = True) -> Stats:
    """Run one property on ``examples`` generated cases; a failure is shrunk (unless ``shrink``
    is false) and described."""
    stats = Stats()
    last_failure: list[tuple[Any, BaseException]] = []
    phases = (Phase.explicit, Phase.reuse, Phase.generate) + ((Phase.shrink,) if shrink else ())

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), print_blob=False, phases=phases)
    @given(strategy)
    def prop(drawn: Any) -> None:
        if not last_failure:
            stats.tried += 1
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
        table = oracle_table() if name.startswith("oracle") else property_table()
        strategy, check = table[name]
        return run_property(name, strategy, check, examples, seed,
                            tick=(lambda: batched.put(1)) if batched is not None else None)
    finally:
        if batched is not None:
            batched.flush()


# Which properties run against the mutants of each module, in order (the first to fail kills).
FAMILIES: dict[str, tuple[str, ...]] = {
    "match": ("soundness", "completeness", "termination", "order"),
    "terms": ("equality", "soundness", "completeness", "order"),
    "guards": ("guards", "soundness", "completeness", "order"),
    "check": ("wf-rejects", "wf-accepts", "wf-terminates"),
    "placement": ("placement",),
    "fastmatch": ("order",),
}


# Mutants are run on somewhat larger programs than the properties' default (budget 10): each case
# then holds more constructs, so that a mutant is met within fewer cases.
KILL_BUDGET = 10


def _family(mutant_name: str) -> tuple[Any, Callable[[Any, Stats], None]]:
    """The strategy and the check of the properties that run against one mutant: the check raises
    a PropertyFailure that starts with the name of the property that failed."""
    from hypothesis import strategies as st

    from .laws import equality_laws, guard_cases, guard_laws, value_triples
    from .mutants import by_name, system

    m = by_name(mutant_name)
    sys_ = system(m)
    family = m.family
    kill_cases = cases(budget=KILL_BUDGET)

    def on_case(case: Case, names: tuple[str, ...]) -> int:
        found: list[Any] | None = None
        for prop in names:
            try:
                if prop == "soundness":
                    found = props.soundness(case, sys_.interpret)
                elif prop == "completeness":
                    props.completeness(case, sys_.interpret, found=found)
                elif prop == "termination":
                    props.terminates(case, sys_.interpret)
                elif prop == "order":
                    props.order(case, sys_)
                elif prop == "placement":
                    props.placement_preserves(case, sys_)
            except props.PropertyFailure as e:
                raise props.PropertyFailure(f"{prop}: {e}") from e
            except RecursionError as e:  # the mutant does not terminate
                raise props.PropertyFailure(f"termination: {prop} meets runaway recursion") from e
        return len(found) if found is not None else 0

    def named(prop: str, f: Callable[[], Any]) -> Any:
        try:
            return f()
        except AssertionError as e:  # PropertyFailure, LawFailure
            raise props.PropertyFailure(f"{prop}: {e}") from e

    names = FAMILIES[family]
    if family == "terms":
        def check(drawn: Any, stats: Stats) -> None:
            triple, case = drawn
            named("equality", lambda: equality_laws(triple, sys_.terms.values_equal))
            stats.add(on_case(case, names[1:]), *case_size(case))
        return st.tuples(value_triples(), kill_cases), check
    if family == "guards":
        def check(drawn: Any, stats: Stats) -> None:
            gc, case = drawn
            named("guards", lambda: guard_laws(gc, sys_.guards, sys_.match))
            stats.add(on_case(case, names[1:]), *case_size(case))
        return st.tuples(guard_cases(), kill_cases), check
    if family == "check":
        def check(drawn: Any, stats: Stats) -> None:
            (bad, kind), program, case = drawn
            named("wf-rejects", lambda: props.rejected(bad, kind, sys_))
            named("wf-accepts", lambda: props.accepted(program, sys_))
            named("wf-terminates", lambda: props.accepted_terminates(case, sys_))
            stats.add(None, *case_size(case))
        return st.tuples(ill_formed_programs(), programs(), cases(loose=True)), check

    if family == "placement":
        def check(drawn: Any, stats: Stats) -> None:
            program, case = drawn
            named("placement", lambda: props.placement_well_formed(program, sys_))
            stats.add(on_case(case, names), *case_size(case))
        return st.tuples(programs(budget=KILL_BUDGET), kill_cases), check

    def check(drawn: Any, stats: Stats) -> None:
        stats.add(on_case(drawn, names), *case_size(drawn))
    return kill_cases, check


def _kill(name: str, examples: int, seed: int | None, queue: Any = None,
          derandomize: bool = False) -> Stats:
    """Run the properties of its family against one mutant; ``failure`` is set when one of them
    fails (the mutant is killed), and starts with the name of that property; ``tried`` is the
    number of cases it took. Failures are not shrunk."""
    strategy, check = _family(name)
    stats = run_property(name, strategy, check, examples, seed,
                         tick=(lambda: queue.put(1)) if queue is not None else None,
                         derandomize=derandomize, shrink=False)
    if stats.failure:
        stats.failure = stats.failure.split("PropertyFailure: ", 1)[-1]
    return stats


def kill(name: str, examples: int = 500, seed: int | None = 0, derandomize: bool = True) -> Stats:
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
    """``pypm conformance [--examples N] [--seed S] [--jobs J] [--property P] [--mutants]
    [--oracle]``."""
    parser = argparse.ArgumentParser(prog="pypm conformance",
                                     description="Check the interpreter against the declarative "
                                                 "semantics on generated programs and terms.")
    parser.add_argument("--examples", type=int, default=2000, help="cases per property (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (job j uses S + j)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--property", action="append", default=None,
                        help="run only this property (repeatable; with --mutants: only this mutant)")
    parser.add_argument("--mutants", action="store_true",
                        help="run the mutation check: every mutant must be killed within --examples")
    parser.add_argument("--oracle", action="store_true",
                        help="the differential test against the interpreter extracted from Coq "
                             "(make -C coq): result lists and regions of match.py and fastmatch")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none when stderr is not a terminal)")
    args = parser.parse_args(argv)
    progress = not args.no_progress and sys.stderr.isatty()
    started = time.perf_counter()
    rows: list[tuple[str, Stats]] = []
    if args.mutants:
        from .mutants import MUTANTS

        chosen = [m for m in MUTANTS if not args.property or m.name in args.property]
        killed = 0
        print(f"{'mutant':<36} {'module':<10} {'killed by':<14} {'cases':>6}  description")
        for m in chosen:
            s = _run_parallel(m.name, args.examples, args.seed, 1, True, progress)
            by = s.failure.split(":", 1)[0] if s.failure else "SURVIVED"
            killed += s.failure is not None
            print(f"{m.name:<36} {m.family:<10} {by:<14} {s.tried:>6}  {m.description}")
        print(f"\n{killed}/{len(chosen)} mutants killed in {time.perf_counter() - started:.1f}s")
        return 0 if killed == len(chosen) else 1
    if args.oracle:
        from .oracle import OracleMissing, driver

        try:
            driver()
        except OracleMissing as e:
            print(f"pypm conformance --oracle: {e}", file=sys.stderr)
            return 2
        names = args.property or list(oracle_table())
    else:
        names = args.property or list(property_table())
    for name in names:
        s = _run_parallel(name, args.examples, args.seed, max(1, args.jobs), False, progress)
        rows.append((name, s))
    print(_table(rows))
    skipped = sum(s.skipped for _, s in rows)
    note = f"; {skipped} outside the Coq model, skipped" if args.oracle else ""
    print(f"\ntotal {sum(s.cases for _, s in rows)} cases in {time.perf_counter() - started:.1f}s "
          f"(--examples {args.examples} --seed {args.seed} --jobs {args.jobs}{note})")
    failures = [s.failure for _, s in rows if s.failure]
    for f in failures:
        print("\n" + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
