"""Rewriting graphs with rules: rules and their bodies, safety, the driver, reports, explain.

The public names (``rule``, ``Rule``, ``Decline``, ``RewritePass``, ``RewriteReport``) are
served from here; each concept lives in a module of its own.
"""

from __future__ import annotations

from .attempt import try_rule
from .driver import RewritePass, SweepCapWarning
from .index import RootIndex, rule_index
from .outcome import Applied, NoMatch, Outcome, Skipped
from .report import NOTE, Hazard, Rewrite, RewriteReport, Skip, SkipKind, Stop, StopKind
from .rule import Decline, Rule, rule
from .safety import check_region, region_nodes, unsafe_reason

__all__ = ["NOTE", "Applied", "Decline", "Hazard", "NoMatch", "Outcome", "Rewrite", "RewritePass",
           "RewriteReport", "RootIndex", "Rule", "Skip", "SkipKind", "Skipped", "Stop", "StopKind",
           "SweepCapWarning", "check_region", "region_nodes", "rule", "rule_index", "try_rule",
           "unsafe_reason"]
