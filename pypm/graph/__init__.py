"""torch.fx graphs seen as terms (LANGUAGE.md §1): types, canonical names, argument
normalisation, purity and CSE, the term view.

Rules and guard functions outside pypm (the standard library in ``pypm.rules`` among them)
use the names exported here.
"""

from __future__ import annotations

from .cse import CSE, TargetNames, cse, cse_classes, is_impure
from .names import fetch_attr, function_name, node_source, target_name
from .types import has_types, infer_value, meta_value, propagate_types, size_value
from .view import FxTerm, GraphView, ParamTerm, match_graph

__all__ = ["CSE", "FxTerm", "GraphView", "ParamTerm", "TargetNames", "cse", "cse_classes", "fetch_attr",
           "function_name", "has_types", "infer_value", "is_impure", "match_graph", "meta_value",
           "node_source", "propagate_types", "size_value", "target_name"]
