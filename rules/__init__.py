"""The standard rules: pattern → kernel, collected by ``pypm.standard_rules()``."""
