"""The ``pypm`` command: ``check``, ``explain``, ``conformance``, ``demo``, ``coverage``.

Each subcommand lives in the module that owns its work; this file only dispatches, so that
``pypm check`` starts without importing torch.fx or the conformance generators.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import PypmError

_SUBCOMMANDS = {
    "check": ("pypm.cli", "check_main", "check pattern files for syntax and well-formedness"),
    "explain": ("pypm.rewrite.explain", "main", "why a pattern does or does not match in a model's graph"),
    "conformance": ("pypm.semantics.conformance", "main",
                    "property-test the interpreter against the declarative semantics"),
    "demo": ("pypm.demo", "main", "compile a small GPT with backend='pypm' and report the rewrites"),
    "coverage": ("pypm.coverage", "main",
                 "which attention, norm and softmax sites of a model the standard rules rewrite, "
                 "and why not"),
}


def check_main(argv: list[str] | None = None) -> int:
    """``pypm check FILE...``: exit 1 and every error when a file is bad; 0 and a summary line
    per file when all are good."""
    from .lang.load import check_files

    parser = argparse.ArgumentParser(prog="pypm check", description=_SUBCOMMANDS["check"][2])
    parser.add_argument("files", nargs="+", help=".pypm pattern files")
    args = parser.parse_args(argv)
    status = 0
    for path, result in check_files(args.files):
        if isinstance(result, list):
            status = 1
            for err in result:
                print(err.render(), file=sys.stderr)
        else:
            names = ", ".join(result.patterns) or "no patterns"
            print(f"{path}: ok, {len(result.patterns)} pattern{'s' if len(result.patterns) != 1 else ''}"
                  f" ({names})")
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pypm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: pypm {" + ",".join(_SUBCOMMANDS) + "} ...\n")
        for name, (_, _, help_) in _SUBCOMMANDS.items():
            print(f"  {name:<12} {help_}")
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from . import __version__

        print(f"pypm {__version__}")
        return 0
    if argv[0] not in _SUBCOMMANDS:
        print(f"pypm: unknown command {argv[0]!r}; try one of: {', '.join(_SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module_name, func, _ = _SUBCOMMANDS[argv[0]]
    try:
        fn = getattr(importlib.import_module(module_name), func)
        return int(fn(argv[1:]) or 0)
    except PypmError as e:
        print(e.render(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
