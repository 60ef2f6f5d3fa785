"""The standard pattern library: ``.pypm`` files loaded with ``pypm.load("attention")``.

The loader imports this package to find the files; importing it registers the guard functions
the standard patterns call (the mask proofs of :mod:`pypm.rules.masks`, the repeat guard of
:mod:`pypm.rules.variants`), so a standard pattern
file checks and matches without any other import.
"""

from pypm.rules import masks, variants

masks.register()
variants.register()
