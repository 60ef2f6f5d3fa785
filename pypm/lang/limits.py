"""The size limits that keep the pattern language total.

Every text given to the parser gives a result or a :class:`~pypm.errors.PypmError` quickly, and
every guard evaluation ends quickly, whatever the input. The recursive passes over patterns
(desugaring, well-formedness, guard placement, the interpreter, printing) run on the Python
stack, so the parser refuses patterns that nest deeper than they can follow, with a message that
says so, instead of letting a ``RecursionError`` escape from whichever pass meets the pattern
first. Guards are evaluated under caps on the size of the numbers, strings and tuples they
compute and on the work one evaluation may do.

The limits are generous for real patterns (the standard library nests about 15 levels deep and
its guards compute with numbers of a few dozen bits).
"""

from __future__ import annotations

# Nesting of one expression as written: parentheses do not count; calls, operators, brackets,
# attribute reads and each link of an operator chain (`a | b | c` is two levels) do.
MAX_NESTING = 100

# Tokens in one statement (a `def` line, a `return`, ...): the parser spends tens of
# microseconds per token, so a statement of this many tokens parses in well under a second.
MAX_STATEMENT_TOKENS = 10_000

# A string literal (a docstring included): at most this many characters.
MAX_STRING_CHARS = 100_000

# Depth of one desugared definition as the interpreter walks it: a local (`name = p`) adds a
# `;` and a `∃`, a non-variable call argument adds the same, and the i-th argument of an
# operator sits i levels deeper than the first (the interpreter threads arguments left to right).
MAX_CORE_DEPTH = 300

# A number literal: at most this many characters (Python itself refuses to convert decimal
# integers of more than 4300 digits).
MAX_NUMBER_CHARS = 4000

# Guard evaluation: integers of at most this many bits, computed strings and tuples of at most
# this many elements, symbolic powers up to this exponent, and this many steps of work (one per
# expression node, plus one per element of a sequence an operation walks).
MAX_INT_BITS = 16384
MAX_SEQ_LEN = 10_000
MAX_SYMBOLIC_EXPONENT = 16
MAX_SYMBOLIC_SIZE = 200
MAX_GUARD_STEPS = 100_000
SYMBOLIC_COST = 1000  # steps charged per symbolic size an operation reads (sympy is slow)

__all__ = ["MAX_CORE_DEPTH", "MAX_GUARD_STEPS", "MAX_INT_BITS", "MAX_NESTING", "MAX_NUMBER_CHARS",
           "MAX_STATEMENT_TOKENS",
           "MAX_STRING_CHARS",
           "MAX_SEQ_LEN", "MAX_SYMBOLIC_EXPONENT", "MAX_SYMBOLIC_SIZE", "SYMBOLIC_COST"]
