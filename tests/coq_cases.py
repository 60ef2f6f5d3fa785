"""The serializer and generator of the Coq differential test live in the package
(:mod:`pypm.semantics.coq_cases`, used by ``pypm conformance --oracle`` too); re-exported here
for ``tests/test_coq.py``."""

from __future__ import annotations

from pypm.semantics.coq_cases import (  # noqa: F401
    GeneratedCase,
    Unsupported,
    case_line,
    generate_cases,
    guard,
    literal,
    pattern,
    positive_term,
    random_term,
    rcase_line,
    region_results,
    results,
    value,
)
