"""Every Python block of the README runs as written (each as a script of its own, since
``@pattern`` reads its source from the file), so the front page cannot drift from the code."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path, monkeypatch):
    import torch

    torch._dynamo.reset()
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(BLOCKS[index])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
