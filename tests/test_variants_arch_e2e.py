"""The architectures of ``test_variants_arch`` end to end: compiled with
``backend=pypm.backend(rules=standard_rules() + opt_in_rules(), inner="aot_eager")`` and
``dynamic=True``, with "cpu" added to ``pypm.rules.FUSED_DEVICES`` so that the rules take the fused
path here (the CPU runs ``pypm::attention``'s reference evaluation of the specification): every
attention site of every graph dynamo makes is rewritten into one ``pypm::attention`` call (Falcon's
too, though it scales its scores in place), and the output equals eager's."""

from __future__ import annotations

import warnings

import pytest
import test_variants_arch_models as models
import torch
from pypm.rules import variants

import pypm
from pypm import rules as std_rules

TOL = 1e-5


@pytest.fixture(autouse=True)
def fused_cpu(monkeypatch):
    monkeypatch.setattr(std_rules, "FUSED_DEVICES", {"cuda", "cpu"})
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compiled(model):
    from torch._dynamo.backends.registry import lookup_backend

    notes: list[str] = []

    def inner(gm, example_inputs):
        notes.extend(variants.notes(gm))
        return lookup_backend("aot_eager")(gm, example_inputs)

    be = pypm.backend(rules=pypm.standard_rules() + std_rules.opt_in_rules(), inner=inner)
    return be, notes, torch.compile(model, backend=be, dynamic=True)


@pytest.mark.parametrize("name, sites", [
    ("phi3", 2), ("gemma3", 2), ("bert", 2), ("vit", 2), ("llama_left_padded", 2), ("bloom", 2),
    ("mpt", 2), ("t5", 6), ("whisper", 6), ("falcon", 2),
])
def test_compiled_dynamic_equals_eager(name, sites):
    model, kwargs = getattr(models, name)()
    with torch.no_grad():
        want = models.output(model(**kwargs))
        be, notes, compiled = _compiled(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = models.output(compiled(**kwargs))
    assert got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan())
    err = (got - want).nan_to_num().abs().max().item()
    assert err <= TOL * max(1.0, want.abs().max().item()), err
    rewritten = 0
    for r in be.reports:
        c = r.counts()
        rewritten += c.get("attention-variant", 0) + c.get("attention", 0)
    assert rewritten == sites * len(be.reports), "\n".join(str(r) for r in be.reports)
    assert len(notes) <= rewritten
