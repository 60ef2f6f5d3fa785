"""The standard pattern library: ``.pypm`` files loaded with ``pypm.load("attention")``."""
