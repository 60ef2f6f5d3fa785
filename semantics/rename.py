"""Renaming the variables of a guard expression (used by M-Call's substitution body[ȳ := x̄]).

The function lives with the syntax (``pypm.lang.syntax.rename_guard``), where the compiled matcher's
inliner uses it too; this module keeps the name the declarative semantics imports."""

from __future__ import annotations

from pypm.lang.syntax import rename_guard

__all__ = ["rename_guard"]
