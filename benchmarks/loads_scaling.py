"""How ``pypm.loads`` scales with the number of definitions in one text.

Each definition is a small pattern of the kind a library holds (an alternative, a call of the
previous definition under an operator, a guard), so the text grows linearly; the per-definition
time should stay flat from 1,000 to 100,000 definitions.

    python3 benchmarks/loads_scaling.py [--sizes 1000 10000 100000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import gc
import time

import pypm


def program(n: int) -> str:
    """A pattern text of n definitions; each one after the first calls the one before it."""
    parts = ["def P0(x, s):\n    return relu(x) | gelu(x) | mul(x, s)\n"]
    for i in range(1, n):
        parts.append(f"def P{i}(x, s):\n"
                     f"    assert s > 0\n"
                     f"    return mul(P{i - 1}(x, s), s) | add(P{i - 1}(x, s), s)\n")
    return "\n".join(parts)


def measure(n: int, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of ``pypm.loads`` on a text of n definitions, in
    seconds (CPU time is the steadier figure on a shared machine)."""
    text = program(n)
    wall = cpu = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        module = pypm.loads(text)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
        assert len(module.patterns) == n
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    pypm.loads("def Warm(x):\n    return x\n")  # build the parser once, outside the timings
    base = None
    print(f"{'definitions':>12} {'wall (s)':>9} {'CPU (s)':>9} {'CPU µs/def':>11} {'ratio vs first':>15}")
    for n in args.sizes:
        wall, cpu = measure(n, args.repeat)
        per = cpu / n * 1e6
        base = base or per
        print(f"{n:>12} {wall:>9.2f} {cpu:>9.2f} {per:>11.1f} {per / base:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
