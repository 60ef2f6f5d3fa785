"""Executable declarative semantics and conformance tests for the pattern language.

* :mod:`.declarative`: ``holds(Δ, σ, v, p)`` decides ``σ ⊨ v : p`` by the rules M-Wild .. M-Then
  of LANGUAGE.md §3 (with derivations), and ``match_set`` enumerates the ⊆-minimal solutions;
  written independently of the interpreter in :mod:`pypm.lang.match`.
* :mod:`.generators`: hypothesis strategies for well-formed programs, terms with shared
  subterms, positive and near-miss terms, and ill-formed programs.
* :mod:`.properties`: soundness, completeness, termination (within the fuel bound of §6) and
  the checker's verdicts, as functions of one case; :mod:`.desugar`: the surface desugarings
  against hand-written core; :mod:`.surface`: core printed back as surface syntax.
* :mod:`.equality`, :mod:`.guardsem`, :mod:`.listsem`: equality of values, three-valued guards
  and the result lists of §4, written apart from the interpreter; :mod:`.laws`: the laws
  ``values_equal`` and the guard evaluator must obey; :mod:`.oracle`: the extracted Coq
  interpreter as an oracle.
* :mod:`.mutants`: deliberate bugs in copies of the interpreter, the compiled matcher, equality,
  the guard evaluator, the checker and guard placement, each of which the properties must kill.
* :mod:`.conformance`: the ``pypm conformance`` command.
"""
