"""The pattern language (LANGUAGE.md), independent of torch: syntax, parsing and desugaring,
well-formedness, guard placement, guards, terms, the interpreter and the compiled matcher,
pattern analyses and the loader.

Rules and guard functions outside pypm use the names exported here.
"""

from __future__ import annotations

from .guards import compare3, eq3, guard_function
from .terms import Term, TermView

__all__ = ["Term", "TermView", "compare3", "eq3", "guard_function"]
