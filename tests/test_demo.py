"""pypm demo: the GPT model compiles with backend="pypm", every block's attention is rewritten,
and the table is printed."""

from __future__ import annotations

from pypm.demo import GPTConfig, example, main, run
from pypm.rewrite.explain import capture_graphs


def test_demo_model_attention_is_rewritten_in_every_block():
    cfg = GPTConfig(layers=2, width=32, heads=2, vocab=64, block=16)
    r = run(cfg, batch=2, tokens=8, inner="aot_eager", dynamic=False, iters=1)
    assert r["counts"] == {"attention": 2}
    assert r["max_abs_diff"] < 1e-4


def test_demo_with_dynamic_shapes():
    cfg = GPTConfig(layers=1, width=32, heads=2, vocab=64, block=16)
    r = run(cfg, batch=2, tokens=8, inner="aot_eager", dynamic=True, iters=1)
    assert all(rep.counts() == {"attention": 1} for rep in r["reports"])
    assert r["max_abs_diff"] < 1e-4


def test_demo_prints_the_table(capsys):
    assert main(["--layers", "1", "--width", "32", "--heads", "2", "--tokens", "8", "--batch", "1",
                 "--inner", "aot_eager", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    for text in ("attention", "max |compiled - eager|", "eager", "compiled (pypm)"):
        assert text in out


def test_example_is_causal_attention_written_by_hand():
    model, inputs = example(GPTConfig(layers=1, width=16, heads=2, vocab=32, block=8), tokens=8)
    (gm,) = capture_graphs(model, inputs)
    targets = {str(n.target) for n in gm.graph.nodes}
    assert {"masked_fill", "tril"} <= targets and "scaled_dot_product_attention" not in str(targets)
