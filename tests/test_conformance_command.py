"""`pypm conformance`: the summary table, the exit status and a pasteable counterexample."""

from __future__ import annotations

from pypm.semantics import conformance
from pypm.semantics.mutants import MUTANTS, interpreter

from pypm.lang.parse import parse_module
from pypm.lang.terms import parse


def test_conformance_command_prints_a_summary_and_exits_zero(capsys):
    assert conformance.main(["--examples", "40", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in ("soundness", "completeness", "termination", "wf-accepts", "wf-rejects", "desugaring"):
        assert name in out
    assert "results 0/1/2/3-9/10+" in out and "FAIL" not in out


def test_a_failure_is_shrunk_to_surface_source_and_a_term_ready_to_paste():
    m = next(m for m in MUTANTS if m.name == "op-name-ignored")
    table = conformance.property_table(interpreter(m))
    strategy, check = table["soundness"]
    stats = conformance.run_property("soundness", strategy, check, 500, seed=0, derandomize=True)
    assert stats.failure is not None
    text = stats.failure.split("\n\n", 1)[1]
    program = parse_module(text).definitions          # the printed program parses back
    assert "Main" in program
    term = next(line for line in text.splitlines() if line.startswith("# term:"))
    parse(term.split(":", 1)[1].strip())              # and so does the term


def test_command_exits_non_zero_when_a_property_fails(monkeypatch, capsys):
    m = next(m for m in MUTANTS if m.name == "op-name-ignored")
    real = conformance.property_table
    monkeypatch.setattr(conformance, "property_table",
                        lambda interpret=None: real(interpret or interpreter(m)))
    assert conformance.main(["--examples", "300", "--no-progress", "--property", "soundness"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "def Main" in out and "# term:" in out
