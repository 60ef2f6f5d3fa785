"""Rewriting graphs with rules: rules and their bodies, safety, the driver, reports, explain.

The public names (``rule``, ``Rule``, ``Decline``, ``RewritePass``, ``RewriteReport``) are
served from here; each concept lives in a module of its own.
"""

from __future__ import annotations

from .driver import RewritePass
from .report import Rewrite, RewriteReport, Skip
from .rule import Decline, Rule, rule
from .safety import region_nodes, unsafe_reason

__all__ = ["Decline", "Rewrite", "RewritePass", "RewriteReport", "Rule", "Skip", "region_nodes", "rule",
           "unsafe_reason"]
