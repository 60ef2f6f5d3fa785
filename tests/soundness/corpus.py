"""The soundness corpus: small adversarial PyTorch programs, as data.

Each :class:`Case` is a program (a function of tensors, or a tiny ``nn.Module``) and a factory of
example inputs. ``test_corpus.py`` compiles every program with ``torch.compile`` through pypm's
backend and checks that it computes what eager PyTorch computes: the same outputs (values, NaN
and inf positions, dtypes, shapes, ``requires_grad``), the same mutations of its inputs and
buffers, the same gradients. A rewrite system that merges common subexpressions and swaps
hand-written attention and norms for fused kernels can break programs in ways a test of the
rules alone never sees; these programs are written to find those ways.

The categories (``CATEGORIES``):

- ``cse``: two computations that look alike but are not interchangeable: fresh tensors that are
  later mutated, values read before and after an in-place update (by name, through a view, or
  through another input that aliases the same memory), the same op under different grad or
  autocast modes, random draws; some of them beside an attention that is rewritten, so that
  the pass does change the graph.
- ``mutation``: attention, norms and softmax whose inputs or intermediates are mutated in place
  between the ops the patterns match, by name or through aliasing inputs.
- ``gradients``: training with learned biases, scales, sinks and norm weights, and attention
  partly under ``no_grad``; every ``.grad`` is compared, ``None`` included.
- ``layout``: programs that rely on the strides of what a rewrite produces, or feed it
  non-contiguous, expanded or permuted tensors.
- ``casts``: dtype conversions around softmax and the norm statistics, including half-precision
  overflow that eager turns into inf or NaN.
- ``masks``: boolean and additive masks, finite fills below real scores, fully masked rows,
  NaN and inf inputs and scales (visible, or hidden behind a mask), scores that overflow, masks
  and scales that change between two calls of one compiled graph.
- ``near_miss``: programs that resemble a pattern but compute something else, which a rewrite
  must leave alone.
- ``rule_body``: shapes and scalars a rule body must handle: Python-scalar biases, broadcasts
  to 5-d, 2-d/3-d/5-d attention, head dims 1 and 300, Sq != Sk, float64, empty tensors.
- ``plain``: programs with nothing to rewrite, which must come through untouched.

Flags: ``wider`` marks a program where eager overflows an intermediate (half scores) that a
fused attention op may keep in float32, as inductor does (pypm's tolerance admits intermediates
wider than eager's); the compiled result must agree with eager or with the program evaluated
in float64 (floating inputs widened, floating outputs rounded back to eager's dtypes).
``known_wrong`` names a difference pypm still has, with the reason, and ``known_wrong_on`` the
runs that show it (``"eager-static"``, ...): those are expected failures (strict: one fails the
suite once it passes, so the flag cannot outlive the bug).
``train`` runs a backward pass and compares gradients; ``rng`` marks programs that draw
random numbers (the test seeds the global generator the same way for eager and compiled, and
checks that draws that differ in eager differ when compiled; ``rng_pairs`` names the outputs
that are separate draws); ``inductor_wrong`` marks a program for which plain
``torch.compile(fn, backend="inductor")``, without pypm, already differs from eager: True, or
"static" / "dynamic" where only one of ``dynamic=False`` / ``dynamic=True`` does (checked when
the flag was set; the test asserts that it still does). Inductor's differences seen so far: it
keeps half-precision intermediates in float32, so a half overflow that eager turns into inf
does not happen; and its own attention fusion (a pattern-matcher pass) turns a softmax over
dim -2, 0 or 1 into attention over the last dim and NaN rows (of a NaN query, a NaN or inf
scale, scores that overflow) into zeros, with static shapes; it fails to compile a division of
the scores by zero.

``tolerance`` (rtol, atol) replaces the tolerance of the output dtype where a program rounds
through a lower precision on the way (a float32 result of a half-precision softmax is only as
close as half). ``again`` gives the inputs of a second call of the same compiled program, with
other values or sizes: a rewrite must hold for every input the graph is reused for, not only
the example it was compiled with.

Shapes are small (batch, heads ≤ 2, sequence ≤ 8, head dim ≤ 16 except where a size is the
point) so that compiling every program on a CPU stays quick. Inputs are drawn from a generator
seeded the same way on every call of a factory, so eager and compiled runs get equal,
independent tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

CSE = "cse"
MUTATION = "mutation"
GRADIENTS = "gradients"
LAYOUT = "layout"
CASTS = "casts"
MASKS = "masks"
NEAR_MISS = "near_miss"
RULE_BODY = "rule_body"
PLAIN = "plain"

CATEGORIES = (CSE, MUTATION, GRADIENTS, LAYOUT, CASTS, MASKS, NEAR_MISS, RULE_BODY, PLAIN)

NEG_INF = float("-inf")


class Draw:
    """Deterministic example inputs: each factory call gets a fresh ``Draw`` with the same seed."""

    def __init__(self, seed: int = 0):
        self.g = torch.Generator().manual_seed(seed)

    @staticmethod
    def _finish(t: torch.Tensor, dtype: torch.dtype, grad: bool) -> torch.Tensor:
        t = t.to(dtype)
        return t.requires_grad_() if grad else t

    def n(self, *shape: int, scale: float = 1.0, shift: float = 0.0, dtype: torch.dtype = torch.float32,
          grad: bool = False) -> torch.Tensor:
        """Normal samples times ``scale`` plus ``shift``."""
        return self._finish(torch.randn(shape, generator=self.g) * scale + shift, dtype, grad)

    def u(self, *shape: int, lo: float = 0.0, hi: float = 1.0, dtype: torch.dtype = torch.float32,
          grad: bool = False) -> torch.Tensor:
        """Uniform samples in [lo, hi)."""
        return self._finish(torch.rand(shape, generator=self.g) * (hi - lo) + lo, dtype, grad)

    def mask(self, *shape: int, p: float = 0.5) -> torch.Tensor:
        """A boolean tensor, True with probability ``p``."""
        return torch.rand(shape, generator=self.g) < p

    def ints(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(high, shape, generator=self.g)

    def qkv(self, b: int = 2, h: int = 2, s: int = 8, d: int = 8, **kw: Any) -> tuple[torch.Tensor, ...]:
        """q, k and v of shape (b, h, s, d)."""
        return self.n(b, h, s, d, **kw), self.n(b, h, s, d, **kw), self.n(b, h, s, d, **kw)


@dataclass(frozen=True)
class Case:
    """One program of the corpus: ``fn`` (or ``module``, a zero-argument factory of an
    ``nn.Module``) applied to ``inputs(Draw())``."""

    name: str
    category: str
    inputs: Callable[[Draw], tuple[Any, ...]]
    fn: Callable[..., Any] | None = None
    module: Callable[[], nn.Module] | None = None
    train: bool = False
    rng: bool = False
    rng_pairs: tuple[tuple[int, int], ...] = ((0, 1),)
    again: Callable[[Draw], tuple[Any, ...]] | None = None
    inductor_wrong: bool | str = False
    wider: bool = False
    known_wrong: str = ""
    known_wrong_on: tuple[str, ...] = ()
    tolerance: tuple[float, float] | None = None
    doc: str = ""

    def make_inputs(self) -> tuple[Any, ...]:
        """Fresh example inputs, equal on every call."""
        return tuple(self.inputs(Draw()))

    def make_again(self) -> tuple[Any, ...] | None:
        """Inputs for a second call of the compiled program (other values, maybe other sizes),
        or None for programs called once."""
        return None if self.again is None else tuple(self.again(Draw(1)))

    def inductor_wrong_when(self, dynamic: bool) -> bool:
        """Whether plain inductor differs from eager on this program with these shapes."""
        if isinstance(self.inductor_wrong, str):
            return self.inductor_wrong == ("dynamic" if dynamic else "static")
        return self.inductor_wrong

    def build(self) -> tuple[Callable[..., Any], nn.Module | None]:
        """The program to run and its module (None for a plain function). Modules are
        initialised from a fixed seed without disturbing the global generator."""
        if self.module is None:
            assert self.fn is not None
            return self.fn, None
        with torch.random.fork_rng():
            torch.manual_seed(0)
            m = self.module()
        return m, m


CASES: list[Case] = []


def case(category: str, inputs: Callable[[Draw], tuple[Any, ...]], **flags: Any) -> Callable[[Any], Any]:
    """Register the decorated function as a case named after it, or an ``nn.Module`` class as a
    case called ``name``."""

    name = flags.pop("name", None)

    def register(obj: Any) -> Any:
        doc = (obj.__doc__ or "").strip()
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            assert name is not None, "a module case is given a snake_case name"
            CASES.append(Case(name, category, inputs, module=obj, doc=doc, **flags))
        else:
            CASES.append(Case(obj.__name__, category, inputs, fn=obj, doc=doc, **flags))
        return obj

    return register


# Attention written the plain way, used as a building block where the block is not the point.


def attend(q, k, v, scale=0.5):
    return torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v


def tril(s, device=None, diagonal=0):
    return torch.ones(s, s, dtype=torch.bool, device=device).tril(diagonal)


def qkv(**kw):
    return lambda d: d.qkv(**kw)


def one(*shape, **kw):
    return lambda d: (d.n(*shape, **kw),)


# ---------------------------------------------------------------------------------------------
# cse: look-alike computations that are not interchangeable
# ---------------------------------------------------------------------------------------------


@case(CSE, one(4, 4))
def cse_clone_then_mul_(x):
    """Two clones are two tensors: scaling one in place leaves the other alone."""
    a = x.clone()
    b = x.clone()
    a.mul_(5)
    return a, b


@case(CSE, one(4, 4))
def cse_add_twice_then_add_(x):
    """``x + 1`` twice gives two tensors; incrementing one must not show in the other."""
    a = x + 1
    b = x + 1
    a.add_(1)
    return a, b


@case(CSE, one(3, 4))
def cse_sum_twice_then_mul_(x):
    """Two equal reductions, one then scaled in place."""
    a = x.sum(0)
    b = x.sum(0)
    a.mul_(2)
    return a, b


@case(CSE, one(4, 4))
def cse_read_before_and_after_input_add_(y):
    """``y + 1`` before and after ``y.add_(1)`` on an input: two different values."""
    p = y + 1
    y.add_(1)
    q = y + 1
    return p, q


@case(CSE, one(4, 4))
def cse_read_before_and_after_intermediate_add_(x):
    """The same, on an intermediate tensor."""
    y = x * 2
    p = y + 1
    y.add_(1)
    q = y + 1
    return p, q


@case(CSE, one(4, 4))
def cse_iadd_operator(x):
    """``y += 1`` (an in-place op through Python's augmented assignment) between two reads."""
    y = x * 3
    p = y.exp()
    y += 1
    q = y.exp()
    return p, q


@case(CSE, one(4))
def cse_zeros_setitem(x):
    """Two ``torch.zeros`` of one shape; writing into one leaves the other zero."""
    a = torch.zeros(4, 4)
    b = torch.zeros(4, 4)
    a[1] = x
    return a, b


@case(CSE, one(4, 4))
def cse_new_zeros_setitem(x):
    """Two ``new_zeros``; a row of one is overwritten."""
    a = x.new_zeros(4, 4)
    b = x.new_zeros(4, 4)
    a[0] = x[0]
    return a + 0, b


@case(CSE, one(4, 4))
def cse_zeros_like_iadd(x):
    """Two ``zeros_like``; ``a += x`` must not reach ``b``."""
    a = torch.zeros_like(x)
    b = torch.zeros_like(x)
    a += x
    return a, b


@case(CSE, one(4, 4))
def cse_empty_strided_fill(x):
    """Two ``empty_strided`` buffers filled with different values."""
    a = torch.empty_strided((4, 4), (4, 1))
    b = torch.empty_strided((4, 4), (4, 1))
    a.fill_(1.0)
    b.fill_(2.0)
    return a + x, b + x


@case(CSE, one(3, 4))
def cse_empty_copy_(x):
    """Two ``torch.empty`` buffers, each ``copy_``-ed from a different source."""
    a = torch.empty(3, 4)
    b = torch.empty(3, 4)
    a.copy_(x)
    b.copy_(x * 2)
    return a, b


@case(CSE, one(6))
def cse_empty_setitem_slices(x):
    """Two ``torch.empty``; one fully written by two slice assignments, the other by fill_."""
    a = torch.empty(6)
    b = torch.empty(6)
    a[:3] = x[:3]
    a[3:] = 0.0
    b.fill_(7.0)
    return a, b


@case(CSE, lambda d: (d.n(5), d.ints(5, 3), d.n(3)))
def cse_ones_index_put_(x, idx, vals):
    """Two ``torch.ones``; ``index_put_`` into one."""
    a = torch.ones(5)
    b = torch.ones(5)
    a.index_put_((idx,), vals, accumulate=True)
    return a * x, b * x


@case(CSE, one(3))
def cse_full_add_(x):
    """Two ``torch.full`` of one value; one is incremented by x."""
    a = torch.full((3,), 2.0)
    b = torch.full((3,), 2.0)
    a.add_(x)
    return a, b


@case(CSE, one(2))
def cse_arange_setitem(x):
    """Two ``torch.arange``; an element of one is overwritten."""
    a = torch.arange(6.0)
    b = torch.arange(6.0)
    a[0] = 100.0
    return a, b + x.sum()


@case(CSE, one(4))
def cse_out_variants(x):
    """``out=`` writes into two fresh buffers with two different results."""
    a = torch.empty(4)
    b = torch.empty(4)
    torch.add(x, 1, out=a)
    torch.add(x, 2, out=b)
    return a, b


@case(CSE, one(4, 4))
def cse_view_alias_add_(x):
    """``y + 0`` before and after ``y.view(-1).add_(1)``: a mutation through a view."""
    y = x * 1
    p = y + 0
    v = y.view(-1)
    v.add_(1)
    q = y + 0
    return p, q


@case(CSE, one(4, 4))
def cse_input_view_alias_add_(x):
    """The same through a view of an input, which must end mutated."""
    p = x + 0
    x.view(-1).add_(1)
    q = x + 0
    return p, q


@case(CSE, one(3, 4))
def cse_detach_alias_mul_(x):
    """``x.detach()`` shares memory with x: scaling it changes a later ``x + 1``."""
    p = x + 1
    x.detach().mul_(3)
    q = x + 1
    return p, q


@case(CSE, one(3, 4))
def cse_slice_alias_sigmoid_(x):
    """A row view is made sigmoid in place between two sums of the whole tensor."""
    y = x.clone()
    a = y.sum()
    y[0].sigmoid_()
    b = y.sum()
    return a, b


@case(CSE, one(3, 4))
def cse_transpose_in_place(x):
    """``y + 0`` before and after ``y.t_()``: the same node arguments, different shapes."""
    y = x.clone()
    a = y + 0
    y.t_()
    b = y + 0
    return a, b


@case(CSE, one(3, 4))
def cse_unsqueeze_in_place(x):
    """``y * 2`` before and after ``y.unsqueeze_(0)``."""
    y = x.clone()
    a = y * 2
    y.unsqueeze_(0)
    b = y * 2
    return a, b


@case(CSE, lambda d: (d.n(5, 3), d.ints(5, 2), d.n(2, 3)))
def cse_index_put_between(x, idx, vals):
    """``y * 2`` before and after ``y.index_put_``."""
    y = x.clone()
    a = y * 2
    y.index_put_((idx,), vals)
    b = y * 2
    return a, b


@case(CSE, lambda d: (d.n(3, 4), d.n(3, 4)))
def cse_copy_between(x, z):
    """``y.sum()`` before and after ``y.copy_(z)``."""
    y = x.clone()
    a = y.sum()
    y.copy_(z)
    b = y.sum()
    return a, b


@case(CSE, one(3, 4))
def cse_setitem_slice_between(x):
    """``y + 1`` before and after ``y[:, :2] = 0``."""
    y = x.clone()
    a = y + 1
    y[:, :2] = 0
    b = y + 1
    return a, b


@case(CSE, one(4, 4))
def cse_input_mutated_between(x):
    """``x.sin()`` before and after ``x.mul_(2)`` on an input."""
    a = x.sin()
    x.mul_(2)
    b = x.sin()
    return a, b


class BufferAccumulator(nn.Module):
    """``acc + x`` before and after ``acc.add_(x)`` on a module buffer, which ends updated."""

    def __init__(self):
        super().__init__()
        self.register_buffer("acc", torch.arange(4.0))

    def forward(self, x):
        a = self.acc + x
        self.acc.add_(x)
        b = self.acc + x
        return a, b


case(CSE, one(4), name="cse_module_buffer_read_around_add_")(BufferAccumulator)


@case(CSE, one(4, 4, grad=True), train=True)
def cse_no_grad_inside_outside(x):
    """``x * 2`` with and without ``torch.no_grad()``: only one of them requires grad."""
    a = x * 2
    with torch.no_grad():
        b = x * 2
    return a, b


@case(CSE, one(4, 4, grad=True), train=True)
def cse_no_grad_first(x):
    """The same with the no-grad copy first."""
    with torch.no_grad():
        b = x * 2
    a = x * 2
    return a, b


@case(CSE, one(4, 4, grad=True), train=True)
def cse_set_grad_enabled_false(x):
    """``torch.set_grad_enabled(False)`` around one of two equal products."""
    a = x.exp()
    with torch.set_grad_enabled(False):
        b = x.exp()
    return a, b


@case(CSE, one(4, 4, grad=True), train=True)
def cse_enable_grad_inside_no_grad(x):
    """``torch.enable_grad()`` nested in ``torch.no_grad()``: the inner product has a grad."""
    with torch.no_grad():
        a = x * 2
        with torch.enable_grad():
            b = x * 2
    return a, b


@case(CSE, one(4, 4, grad=True))
def cse_inference_mode(x):
    """``x * 2`` inside and outside ``torch.inference_mode()``."""
    a = x * 2
    with torch.inference_mode():
        b = x * 2
    return a, b


@case(CSE, lambda d: (d.n(4, 8), d.n(8, 4)))
def cse_autocast_matmul(x, w):
    """The same matmul outside and inside ``autocast(bfloat16)``: float32, then bfloat16."""
    a = x @ w
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = x @ w
    return a, b


@case(CSE, lambda d: (d.n(4, 8), d.n(8, 4)))
def cse_autocast_matmul_first(x, w):
    """The autocast copy first."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = x @ w
    a = x @ w
    return a, b


@case(CSE, lambda d: (d.n(4, 8), d.n(8, 4)))
def cse_autocast_disabled_inside(x, w):
    """``autocast(enabled=False)`` nested in autocast: one bfloat16 product, one float32."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = x @ w
        with torch.autocast("cpu", enabled=False):
            b = x @ w
    return a, b


@case(CSE, qkv())
def cse_autocast_attention_twice(q, k, v):
    """One attention outside and one inside autocast."""
    a = attend(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = attend(q, k, v)
    return a, b


@case(CSE, one(4, 16), rng=True)
def cse_dropout_twice(x):
    """Two ``F.dropout(training=True)`` of one tensor: two different masks."""
    return F.dropout(x, 0.5, training=True), F.dropout(x, 0.5, training=True)


@case(CSE, one(2, 6, 4), rng=True)
def cse_dropout1d_twice(x):
    """Two ``F.dropout1d`` draws."""
    return F.dropout1d(x, 0.5, training=True), F.dropout1d(x, 0.5, training=True)


@case(CSE, one(4, 16), rng=True)
def cse_rrelu_twice(x):
    """Two ``F.rrelu(training=True)``: random negative slopes."""
    return F.rrelu(x, training=True), F.rrelu(x, training=True)


@case(CSE, one(4, 4), rng=True)
def cse_rand_like_twice(x):
    """Two ``torch.rand_like``."""
    return torch.rand_like(x), torch.rand_like(x)


@case(CSE, one(4), rng=True)
def cse_randn_twice(x):
    """Two ``torch.randn`` of one shape."""
    return torch.randn(4, 4) + x, torch.randn(4, 4) + x


@case(CSE, lambda d: (d.u(4, 16),), rng=True)
def cse_bernoulli_twice(p):
    """Two ``torch.bernoulli`` of one probability tensor."""
    return torch.bernoulli(p), torch.bernoulli(p)


@case(CSE, lambda d: (d.u(2, 6, lo=0.1),), rng=True)
def cse_multinomial_twice(p):
    """Two ``torch.multinomial`` draws."""
    return torch.multinomial(p, 8, replacement=True), torch.multinomial(p, 8, replacement=True)


@case(CSE, one(4, 4), rng=True)
def cse_uniform_in_place_twice(x):
    """Two ``empty_like(x).uniform_()``: fresh buffers filled randomly."""
    return torch.empty_like(x).uniform_(), torch.empty_like(x).uniform_()


@case(CSE, one(4, 4), rng=True)
def cse_normal_twice(x):
    """Two ``torch.normal`` around one mean."""
    return torch.normal(x, 1.0), torch.normal(x, 1.0)


@case(CSE, one(2), rng=True)
def cse_randint_twice(x):
    """Two ``torch.randint``."""
    return torch.randint(0, 100, (8,)), torch.randint(0, 100, (8,))


class DropoutTwice(nn.Module):
    """One ``nn.Dropout`` module (training mode) called twice on one input."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(x), self.drop(x)


case(CSE, one(4, 16), rng=True, name="cse_dropout_module_twice")(DropoutTwice)


def aliased(d):
    x = d.n(4, 4)
    return x, x.view(-1)


@case(CSE, aliased)
def cse_aliased_inputs_read_around_add_(x, x_flat):
    """Two inputs that share memory: ``x + 1`` before and after ``x_flat.add_(1)`` differ, though
    the graph never writes x by name."""
    a = x + 1
    x_flat.add_(1)
    b = x + 1
    return a, b


@case(CSE, qkv())
def cse_attention_twice_input_mutated(q, k, v):
    """The same attention before and after ``q.add_(1)``: two different results."""
    o1 = attend(q, k, v)
    q.add_(1)
    o2 = attend(q, k, v)
    return o1, o2


def aliased_q(d):
    q, k, v = d.qkv()
    return q, q.view(-1), k, v


@case(CSE, aliased_q)
def cse_attention_twice_aliased_input_mutated(q, q_flat, k, v):
    """The same attention before and after an update of q through another input that aliases it."""
    o1 = attend(q, k, v)
    q_flat.add_(1)
    o2 = attend(q, k, v)
    return o1, o2


@case(CSE, qkv())
def cse_attention_output_cloned_then_mul_(q, k, v):
    """An attention output cloned twice, one clone scaled in place: the graph is rewritten, and
    the clones stay two tensors."""
    o = attend(q, k, v)
    a = o.clone()
    b = o.clone()
    a.mul_(5)
    return a, b


@case(CSE, qkv())
def cse_zeros_setitem_beside_attention(q, k, v):
    """Two ``torch.zeros``, one written into, in a graph where an attention is rewritten."""
    a = torch.zeros(2, 8)
    b = torch.zeros(2, 8)
    a[0] = q[0, 0, 0]
    return attend(q, k, v), a, b


@case(CSE, qkv(grad=True), train=True)
def cse_attention_with_and_without_grad(q, k, v):
    """One attention with grad, the same one under ``torch.no_grad()``."""
    a = attend(q, k, v)
    with torch.no_grad():
        b = attend(q, k, v)
    return a, b


@case(CSE, qkv(), rng=True)
def cse_dropout_twice_beside_attention(q, k, v):
    """Two dropout draws in a graph where an attention is rewritten."""
    o = attend(q, k, v)
    return F.dropout(o, 0.5, training=True), F.dropout(o, 0.5, training=True)


# ---------------------------------------------------------------------------------------------
# mutation: pattern inputs and intermediates updated in place between the matched ops
# ---------------------------------------------------------------------------------------------


@case(MUTATION, qkv())
def mut_q_after_scores(q, k, v):
    """q is scaled in place after the scores are computed: the scores use the old q."""
    s = q @ k.mT * 0.5
    q.mul_(2)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_k_after_scores(q, k, v):
    """k is shifted in place after the (divided) scores."""
    s = q @ k.transpose(-2, -1) / 4
    k.add_(1)
    return torch.softmax(s, dim=-1) @ v


@case(MUTATION, qkv())
def mut_q_copied_after_scores(q, k, v):
    """``q.copy_(k)`` after the scores."""
    s = q @ k.transpose(-2, -1) * 0.5
    q.copy_(k)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_q_view_zeroed_after_scores(q, k, v):
    """q zeroed through a flat view after the scores."""
    s = q @ k.transpose(-2, -1) * 0.5
    q.view(-1).zero_()
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_kt_view_after_scores(q, k, v):
    """k scaled through its transposed view, the one the scores were computed from."""
    kt = k.transpose(-2, -1)
    s = q @ kt * 0.5
    kt.mul_(2)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_v_between_matmuls(q, k, v):
    """v is scaled between the two matmuls: the second one sees the new v."""
    s = q @ k.transpose(-2, -1) * 0.5
    v.mul_(3)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_v_after_attention(q, k, v):
    """v is scaled after the attention: the result uses the old v."""
    o = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
    v.mul_(3)
    return o


@case(MUTATION, qkv())
def mut_scores_mul_in_place(q, k, v):
    """The scale is applied to the scores in place."""
    s = q @ k.transpose(-2, -1)
    s.mul_(0.5)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_scores_itruediv(q, k, v):
    """``s /= 4``: an in-place division by augmented assignment."""
    s = q @ k.transpose(-2, -1)
    s /= 4
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_scores_masked_fill_in_place(q, k, v):
    """The causal mask is applied to the scores in place."""
    s = q @ k.transpose(-2, -1) * 0.5
    s.masked_fill_(~tril(s.shape[-1]), NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_scores_after_softmax(q, k, v):
    """The scores are updated after the softmax and returned too."""
    s = q @ k.transpose(-2, -1) * 0.5
    p = torch.softmax(s, -1)
    s.add_(1)
    return p @ v, s


@case(MUTATION, qkv())
def mut_probs_in_place(q, k, v):
    """The probabilities are scaled in place before the second matmul."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    p.mul_(2)
    return p @ v


@case(MUTATION, qkv())
def mut_probs_setitem(q, k, v):
    """A column of the probabilities is zeroed before the second matmul."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    p[..., 0] = 0
    return p @ v


@case(MUTATION, qkv())
def mut_attention_output_add_(q, k, v):
    """The attention output is incremented in place."""
    o = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
    o.add_(1)
    return o


@case(MUTATION, qkv())
def mut_causal_mask_setitem(q, k, v):
    """A tril mask with one entry above the diagonal set afterwards: not causal any more."""
    m = tril(q.shape[-2])
    m[2, 5] = True
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~m, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_causal_mask_triu_in_place(q, k, v):
    """A tril mask narrowed in place by ``triu_(-2)``: a sliding window, not causal."""
    m = tril(q.shape[-2])
    m.triu_(-2)
    s = torch.where(m, q @ k.transpose(-2, -1) * 0.5, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MUTATION, qkv())
def mut_causal_bias_setitem(q, k, v):
    """An additive causal bias (-inf above the diagonal) with one entry reopened."""
    n = q.shape[-2]
    bias = torch.full((n, n), NEG_INF).triu(1)
    bias[3, 6] = 0.0
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(MUTATION, lambda d: (d.n(2, 4, 8), d.n(8)))
def mut_rms_input_midway(x, w):
    """RMSNorm whose input is scaled in place after its mean square is taken."""
    ms = x.pow(2).mean(-1, keepdim=True)
    x.mul_(2)
    return x * torch.rsqrt(ms + 1e-6) * w


@case(MUTATION, lambda d: (d.n(2, 4, 8), d.n(8)))
def mut_rms_input_after(x, w):
    """RMSNorm whose input is updated in place after the norm."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    x.add_(1)
    return y


@case(MUTATION, one(2, 4, 8))
def mut_layer_norm_input_midway(x):
    """LayerNorm whose input is shifted in place after the mean is taken."""
    mu = x.mean(-1, keepdim=True)
    x.sub_(1)
    c = x - mu
    var = (c * c).mean(-1, keepdim=True)
    return c / torch.sqrt(var + 1e-5)


@case(MUTATION, one(2, 4, 8))
def mut_layer_norm_centered_midway(x):
    """LayerNorm whose centred input is scaled in place after the variance is taken."""
    c = x - x.mean(-1, keepdim=True)
    var = (c * c).mean(-1, keepdim=True)
    c.mul_(2)
    return c * torch.rsqrt(var + 1e-5)


@case(MUTATION, one(2, 8, scale=30.0))
def mut_softmax_input_after_max(x):
    """A written-out softmax whose input is tripled after the max: exp overflows in eager."""
    m = x.amax(-1, keepdim=True)
    x.mul_(3)
    e = (x - m).exp()
    return e / e.sum(-1, keepdim=True)


@case(MUTATION, one(2, 8, scale=30.0))
def mut_softmax_input_between_exps(x):
    """The numerator and denominator written separately, the input tripled between them."""
    e1 = (x - x.amax(-1, keepdim=True)).exp()
    x.mul_(3)
    e2 = (x - x.amax(-1, keepdim=True)).exp()
    return e1 / e2.sum(-1, keepdim=True)


@case(MUTATION, one(2, 8, scale=30.0))
def mut_softmax_input_lowered_after_max(x):
    """The input lowered by 200 after the max: every exp underflows to 0 in eager (0/0)."""
    m = x.amax(-1, keepdim=True)
    x.sub_(200)
    e = (x - m).exp()
    return e / e.sum(-1, keepdim=True)


@case(MUTATION, aliased_q)
def mut_aliased_q_after_scores(q, q_flat, k, v):
    """q scaled after the scores through another input that aliases it."""
    s = q @ k.transpose(-2, -1) * 0.5
    q_flat.mul_(2)
    return torch.softmax(s, -1) @ v


def aliased_k_rows(d):
    q, k, v = d.qkv()
    return q, k, k[:, :, 2:5], v


@case(MUTATION, aliased_k_rows)
def mut_aliased_k_rows_after_scores(q, k, k_rows, v):
    """Some rows of k updated after the scores through an input that is a slice of k."""
    s = q @ k.transpose(-2, -1) * 0.5
    k_rows.add_(1)
    return torch.softmax(s, -1) @ v


def aliased_v(d):
    q, k, v = d.qkv()
    return q, k, v, v[:, :, :4]


@case(MUTATION, aliased_v)
def mut_aliased_v_after_attention(q, k, v, v_head):
    """v partly zeroed after the attention through an input that is a slice of it."""
    o = attend(q, k, v)
    v_head.zero_()
    return o


@case(MUTATION, qkv())
def mut_scores_out_variant(q, k, v):
    """The scores written by ``torch.matmul(..., out=buffer)``, q zeroed afterwards."""
    s = torch.empty(2, 2, 8, 8)
    torch.matmul(q, k.transpose(-2, -1), out=s)
    q.zero_()
    return torch.softmax(s * 0.5, -1) @ v


# ---------------------------------------------------------------------------------------------
# gradients: training through attention and norms with parameters
# ---------------------------------------------------------------------------------------------


def qkv_grad(**kw):
    return lambda d: d.qkv(grad=True, **kw)


class T5BiasAttention(nn.Module):
    """Attention with a learned additive position bias (T5) over (heads, q, k)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1, 2, 8, 8))

    def forward(self, q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) + self.bias, dim=-1) @ v


case(GRADIENTS, qkv_grad(), train=True, name="grad_t5_bias")(T5BiasAttention)


class ScaledT5BiasAttention(nn.Module):
    """Scaled scores plus a learned bias, q/k/v without grads: only the bias learns."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(2, 8, 8) * 0.1)

    def forward(self, q, k, v):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + self.bias
        return torch.softmax(s, dim=-1) @ v


case(GRADIENTS, qkv(), train=True, name="grad_scaled_t5_bias_only")(ScaledT5BiasAttention)


class LearnedScaleAttention(nn.Module):
    """Attention whose scale is a learned scalar parameter."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.3))

    def forward(self, q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1) @ v


case(GRADIENTS, qkv_grad(), train=True, name="grad_learned_scale")(LearnedScaleAttention)


class PerHeadScaleAttention(nn.Module):
    """A learned temperature per head, shape (1, H, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.temp = nn.Parameter(torch.rand(1, 2, 1, 1) + 0.5)

    def forward(self, q, k, v):
        return torch.softmax((q @ k.transpose(-2, -1)) / self.temp, dim=-1) @ v


case(GRADIENTS, qkv_grad(), train=True, name="grad_per_head_temperature")(PerHeadScaleAttention)


class SinkAttention(nn.Module):
    """Attention with a learned sink logit per head, concatenated then dropped."""

    def __init__(self):
        super().__init__()
        self.sink = nn.Parameter(torch.randn(2))

    def forward(self, q, k, v):
        b, h, s, _ = q.shape
        scores = q @ k.transpose(-2, -1) * 0.5
        sink = self.sink.view(1, h, 1, 1).expand(b, h, s, 1)
        p = torch.softmax(torch.cat([scores, sink], -1), dim=-1)[..., :-1]
        return p @ v


case(GRADIENTS, qkv_grad(), train=True, name="grad_sink_logits")(SinkAttention)


class AlibiAttention(nn.Module):
    """ALiBi-style bias: a learned slope per head times the key-query distance, causal mask."""

    def __init__(self):
        super().__init__()
        self.slopes = nn.Parameter(torch.tensor([0.5, 0.25]))

    def forward(self, q, k, v):
        n = q.shape[-2]
        pos = torch.arange(n)
        dist = (pos[None, :] - pos[:, None]).float()
        bias = self.slopes.view(1, -1, 1, 1) * dist
        s = (q @ k.transpose(-2, -1) * 0.5 + bias).masked_fill(~tril(n), NEG_INF)
        return torch.softmax(s, -1) @ v


case(GRADIENTS, qkv_grad(), train=True, name="grad_alibi_slopes")(AlibiAttention)


@case(GRADIENTS, qkv_grad(), train=True)
def grad_attention_plain(q, k, v):
    """Plain scaled attention; grads of q, k and v."""
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


@case(GRADIENTS, qkv_grad(), train=True)
def grad_attention_causal(q, k, v):
    """Causal attention (masked_fill with -inf); grads of q, k and v."""
    s = q @ k.transpose(-2, -1) * 0.5
    s = s.masked_fill(~tril(s.shape[-1]), NEG_INF)
    return torch.softmax(s, -1) @ v


@case(GRADIENTS, lambda d: (d.n(2, 2, 8, 8, grad=True), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8)), train=True)
def grad_attention_only_q(q, k, v):
    """Only q requires grad: k.grad and v.grad stay None."""
    return attend(q, k, v)


@case(GRADIENTS, lambda d: (*d.qkv(grad=True), d.n(2, 1, 8, 8, grad=True)), train=True)
def grad_attention_bias_input(q, k, v, bias):
    """An additive bias input that requires grad (broadcast over heads)."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(GRADIENTS, lambda d: (*d.qkv(grad=True), torch.tensor(0.4, requires_grad=True)), train=True)
def grad_attention_scale_tensor(q, k, v, scale):
    """The scale is a 0-d tensor input that requires grad."""
    return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v


@case(GRADIENTS, lambda d: (*d.qkv(grad=True), torch.tensor([8, 5])), train=True)
def grad_attention_padding(q, k, v, lengths):
    """A key padding mask from lengths; grads through the unmasked keys."""
    keep = torch.arange(k.shape[-2])[None, :] < lengths[:, None]
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~keep[:, None, None, :], NEG_INF)
    return torch.softmax(s, -1) @ v


@case(GRADIENTS, qkv_grad(), train=True)
def grad_attention_dropout_p0(q, k, v):
    """Dropout with p=0 in training mode between softmax and the second matmul."""
    p = F.dropout(torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1), 0.0, training=True)
    return p @ v


class FrozenBiasAttention(nn.Module):
    """A bias parameter with ``requires_grad=False``: its grad must stay None."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1, 1, 8, 8), requires_grad=False)

    def forward(self, q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + self.bias, dim=-1) @ v


case(GRADIENTS, qkv_grad(), train=True, name="grad_frozen_bias")(FrozenBiasAttention)


class RMSNormModule(nn.Module):
    """RMSNorm written out with a learned weight."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(16) + 0.5)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


case(GRADIENTS, one(2, 4, 16, grad=True), train=True, name="grad_rms_norm_weight")(RMSNormModule)


class LayerNormModule(nn.Module):
    """LayerNorm written out (GPT-2 style) with learned weight and bias."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(16) + 0.5)
        self.bias = nn.Parameter(torch.randn(16) * 0.1)

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


case(GRADIENTS, one(2, 4, 16, grad=True), train=True, name="grad_layer_norm_weight_bias")(LayerNormModule)


class TorchNorms(nn.Module):
    """``F.layer_norm`` and ``F.rms_norm`` with weights (and a bias) from the module."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.rand(16) + 0.5)
        self.b1 = nn.Parameter(torch.randn(16) * 0.1)
        self.w2 = nn.Parameter(torch.rand(16) + 0.5)

    def forward(self, x):
        y = F.layer_norm(x, (16,), self.w1, self.b1, 1e-5)
        return F.rms_norm(y * 2, (16,), self.w2, 1e-6)


case(GRADIENTS, one(2, 4, 16, grad=True), train=True, name="grad_torch_norm_calls")(TorchNorms)


class BiasOnlyLayerNorm(nn.Module):
    """LayerNorm without a weight, with a learned bias: the norm's input has no grad."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(16))

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        c = x - mu
        return c * torch.rsqrt((c * c).mean(-1, keepdim=True) + 1e-5) + self.bias


case(GRADIENTS, one(2, 4, 16), train=True, name="grad_layer_norm_bias_only")(BiasOnlyLayerNorm)


@case(GRADIENTS, one(2, 4, 8, grad=True), train=True)
def grad_softmax_written_out(x):
    """The numerically stable softmax written out; grad of its input."""
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


class TinyBlock(nn.Module):
    """A pre-norm transformer block: LayerNorm, fused qkv projection, causal attention, output
    projection, residual."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (y.view(b, t, 2, 8).transpose(1, 2) for y in self.qkv(self.ln(x)).split(c, dim=2))
        s = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~tril(t), NEG_INF)
        o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, c)
        return x + self.out(o)


case(GRADIENTS, one(2, 8, 16, grad=True), train=True, name="grad_transformer_block")(TinyBlock)


@case(GRADIENTS, qkv_grad(), train=True)
def grad_scores_under_no_grad(q, k, v):
    """The scores computed under ``torch.no_grad()``: only v gets a gradient."""
    with torch.no_grad():
        s = q @ k.transpose(-2, -1) * 0.5
    return torch.softmax(s, -1) @ v


@case(GRADIENTS, qkv_grad(), train=True)
def grad_probs_under_no_grad(q, k, v):
    """The softmax computed under ``torch.no_grad()``: only v gets a gradient."""
    s = q @ k.transpose(-2, -1) * 0.5
    with torch.no_grad():
        p = torch.softmax(s, -1)
    return p @ v


@case(GRADIENTS, qkv_grad(), train=True)
def grad_scores_detached(q, k, v):
    """The scores detached: q and k get no gradient."""
    s = (q @ k.transpose(-2, -1)).detach() * 0.5
    return torch.softmax(s, -1) @ v


@case(GRADIENTS, qkv_grad(), train=True)
def grad_enable_grad_for_last_matmul(q, k, v):
    """Scores and softmax under ``no_grad``, the last matmul under ``enable_grad`` inside it."""
    with torch.no_grad():
        p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
        with torch.enable_grad():
            o = p @ v
    return o


# ---------------------------------------------------------------------------------------------
# layout: strides relied upon, non-contiguous inputs
# ---------------------------------------------------------------------------------------------


@case(LAYOUT, qkv())
def layout_output_view_bh(q, k, v):
    """``(attn @ v).view(B * H, S, D)``: the output must be contiguous like eager's."""
    b, h, s, d = q.shape
    return attend(q, k, v).view(b * h, s, d)


@case(LAYOUT, qkv())
def layout_output_flat_view(q, k, v):
    """``.view(-1)`` of the attention output."""
    return attend(q, k, v).view(-1)


@case(LAYOUT, qkv())
def layout_output_double_transpose_view(q, k, v):
    """Transposed twice (contiguous again in eager), then viewed flat."""
    o = attend(q, k, v).transpose(1, 2).transpose(1, 2)
    return o.view(-1, o.shape[-1])


@case(LAYOUT, qkv())
def layout_output_transpose_reshape(q, k, v):
    """The usual merge of heads: transpose, reshape."""
    b, h, s, d = q.shape
    return attend(q, k, v).transpose(1, 2).reshape(b, s, h * d)


@case(LAYOUT, qkv())
def layout_output_transpose_contiguous_view(q, k, v):
    """The merge of heads with ``contiguous().view``."""
    b, h, s, d = q.shape
    return attend(q, k, v).transpose(1, 2).contiguous().view(b, s, h * d)


@case(LAYOUT, one(2, 8, 48))
def layout_split_heads(x):
    """q, k, v split from one tensor and viewed/transposed into heads (non-contiguous); the
    output is viewed as (B, H * S, D)."""
    b, t, _ = x.shape
    q, k, v = (y.view(b, t, 2, 8).transpose(1, 2) for y in x.split(16, dim=2))
    o = attend(q, k, v)
    return o.view(b, 2 * t, 8)


@case(LAYOUT, lambda d: (d.n(2, 2, 8, 8), d.n(2, 8, 2, 8), d.n(2, 2, 8, 8)))
def layout_k_permuted(q, k, v):
    """k given as (B, S, H, D) and permuted straight to (B, H, D, S)."""
    return torch.softmax(q @ k.permute(0, 2, 3, 1) * 0.5, -1) @ v


@case(LAYOUT, lambda d: (d.n(2, 2, 8, 8), d.n(2, 1, 8, 8), d.n(2, 1, 8, 8)))
def layout_kv_expanded(q, k, v):
    """k and v with one head expanded to two (stride 0)."""
    b, h, s, d = q.shape
    return attend(q, k.expand(b, h, s, d), v.expand(b, h, s, d))


@case(LAYOUT, lambda d: (d.n(2, 4, 8, 8), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8)))
def layout_kv_repeat_interleave(q, k, v):
    """Grouped-query attention: k and v repeated per head group."""
    k = k.repeat_interleave(2, dim=1)
    v = v.repeat_interleave(2, dim=1)
    return attend(q, k, v)


@case(LAYOUT, lambda d: (d.n(2, 2, 8, 16), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8)))
def layout_q_strided(q, k, v):
    """q is every other element of the last dim (stride 2)."""
    return attend(q[..., ::2], k, v)


@case(LAYOUT, qkv())
def layout_bmm_3d_views(q, k, v):
    """Attention through 3-d views and ``bmm``, viewed back to 4-d."""
    b, h, s, d = q.shape
    q3, k3, v3 = q.reshape(b * h, s, d), k.reshape(b * h, s, d), v.reshape(b * h, s, d)
    p = torch.softmax(torch.bmm(q3, k3.transpose(1, 2)) * 0.5, dim=-1)
    return torch.bmm(p, v3).view(b, h, s, d)


@case(LAYOUT, qkv())
def layout_kt_contiguous(q, k, v):
    """k transposed and made contiguous before the matmul."""
    return torch.softmax(q @ k.mT.contiguous() * 0.5, -1) @ v


@case(LAYOUT, lambda d: (d.n(2, 16, 4, 4), d.n(16)))
def layout_channels_last_rms(x, w):
    """RMSNorm over channels of an NCHW tensor permuted to NHWC and back."""
    y = x.permute(0, 2, 3, 1)
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    return y.permute(0, 3, 1, 2)


@case(LAYOUT, lambda d: (d.n(2, 16, 4), d.n(16), d.n(16)))
def layout_layer_norm_transposed(x, w, b):
    """``F.layer_norm`` of a transposed (non-contiguous) input; the result viewed flat after
    ``contiguous``."""
    return F.layer_norm(x.transpose(1, 2), (16,), w, b).contiguous().view(-1)


@case(LAYOUT, one(2, 8, 2, 8))
def layout_softmax_of_permuted(x):
    """Softmax over the last dim of a permuted tensor, the result viewed after ``contiguous``."""
    return torch.softmax(x.permute(0, 2, 1, 3), dim=-1).contiguous().view(2, -1)


def split_heads(x):
    b, t, _ = x.shape
    return tuple(y.view(b, t, 2, 8).transpose(1, 2) for y in x.split(16, dim=2))


@case(LAYOUT, one(2, 8, 48))
def layout_split_heads_scaled_then_view(x):
    """Heads split from one tensor; the output scaled (an elementwise op keeps its strides), then
    viewed."""
    q, k, v = split_heads(x)
    return (attend(q, k, v) * 2).view(2, 16, 8)


@case(LAYOUT, one(2, 8, 48))
def layout_split_heads_clone_then_view(x):
    """The output cloned (``clone`` keeps strides), then viewed flat."""
    q, k, v = split_heads(x)
    return attend(q, k, v).clone().view(-1)


@case(LAYOUT, one(2, 8, 48))
def layout_split_heads_empty_like_copy_view(x):
    """The output copied into ``empty_like`` of itself (same strides), then viewed flat."""
    q, k, v = split_heads(x)
    o = attend(q, k, v)
    buf = torch.empty_like(o)
    buf.copy_(o)
    return buf.view(-1)


@case(LAYOUT, one(2, 8, 48))
def layout_split_heads_dtype_view(x):
    """The output reinterpreted as int32 and back (a dtype view needs the last dim contiguous),
    then viewed flat."""
    q, k, v = split_heads(x)
    return attend(q, k, v).relu().view(torch.int32).view(torch.float32).view(-1)


# ---------------------------------------------------------------------------------------------
# casts: dtype conversions around softmax and the norm statistics
# ---------------------------------------------------------------------------------------------


@case(CASTS, qkv(), tolerance=(1e-2, 1e-2))
def cast_softmax_in_half(q, k, v):
    """``softmax(s.half(), -1).float() @ v``: the softmax is computed in half precision."""
    s = q @ k.transpose(-2, -1) * 0.5
    return torch.softmax(s.half(), -1).float() @ v


@case(CASTS, qkv(), tolerance=(2e-2, 2e-2))
def cast_scores_to_bf16(q, k, v):
    """The scores cast to bfloat16 between the matmul and the softmax."""
    s = (q @ k.transpose(-2, -1) * 0.5).to(torch.bfloat16)
    return torch.softmax(s, -1).to(torch.float32) @ v


@case(CASTS, lambda d: (d.n(2, 2, 8, 8), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8, dtype=torch.bfloat16)))
def cast_probs_type_of_v(q, k, v):
    """``probs.type(v.dtype)``: float32 probabilities cast to v's bfloat16."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    return p.type(v.dtype) @ v


@case(CASTS, qkv(dtype=torch.float16))
def cast_type_as_q(q, k, v):
    """Softmax in float32, ``type_as(q)`` back to half."""
    s = q @ k.transpose(-2, -1) * 0.5
    return torch.softmax(s.float(), -1).type_as(q) @ v


@case(CASTS, qkv(dtype=torch.float16))
def cast_llama_softmax(q, k, v):
    """LLaMA's ``F.softmax(scores.float(), dim=-1).type_as(q)``, scaled by 1/sqrt(d)."""
    s = q @ k.transpose(2, 3) / math.sqrt(q.shape[-1])
    return F.softmax(s.float(), dim=-1).type_as(q) @ v


@case(CASTS, qkv(dtype=torch.bfloat16))
def cast_softmax_dtype_argument(q, k, v):
    """``softmax(s, -1, dtype=float32)`` on bfloat16 scores, cast back to v's dtype."""
    s = q @ k.transpose(-2, -1) * 0.5
    return torch.softmax(s, -1, dtype=torch.float32).to(v.dtype) @ v


@case(CASTS, qkv())
def cast_softmax_dtype_double(q, k, v):
    """Softmax into float64, multiplied with a float64 v."""
    s = q @ k.transpose(-2, -1) * 0.5
    return torch.softmax(s, -1, dtype=torch.float64) @ v.double()


@case(CASTS, qkv(), tolerance=(2e-2, 2e-2))
def cast_probs_bf16_round_trip(q, k, v):
    """Probabilities rounded through bfloat16 and back before the second matmul."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    return p.bfloat16().float() @ v


@case(CASTS, qkv(scale=150.0), inductor_wrong=True)
def cast_scores_half_overflow(q, k, v):
    """Scores beyond half's range cast to half: ±inf, and NaN after the softmax in eager."""
    s = q @ k.transpose(-2, -1)
    return torch.softmax(s.half(), -1).float() @ v


@case(CASTS, lambda d: (d.n(2, 2, 8, 8, dtype=torch.float16), d.n(2, 2, 8, 8, dtype=torch.float16),
                        d.n(2, 2, 8, 8)), tolerance=(1e-2, 1e-2))
def cast_mixed_half_qk_float_v(q, k, v):
    """Half scores, the probabilities cast to float32 for a float32 v."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1).float() @ v


@case(CASTS, qkv(dtype=torch.float16))
def cast_attention_half(q, k, v):
    """Attention entirely in half precision."""
    return attend(q, k, v)


@case(CASTS, qkv(dtype=torch.bfloat16))
def cast_attention_bf16(q, k, v):
    """Attention entirely in bfloat16."""
    return attend(q, k, v, scale=1 / math.sqrt(8))


@case(CASTS, qkv())
def cast_attention_autocast(q, k, v):
    """Attention under ``autocast(bfloat16)``: matmuls in bfloat16, softmax in float32."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return attend(q, k, v)


@case(CASTS, lambda d: (d.u(2, 4, 8, lo=1e3, hi=6e4), d.n(8)), inductor_wrong=True)
def cast_rms_half_overflow(x, w):
    """RMSNorm of values cast to half: the squares overflow to inf, so eager's output is 0."""
    xh = x.half()
    y = xh * torch.rsqrt(xh.pow(2).mean(-1, keepdim=True) + 1e-6)
    return y.float() * w


@case(CASTS, lambda d: (d.n(2, 4, 16, dtype=torch.float16), d.n(16, dtype=torch.float16)))
def cast_rms_llama(x, w):
    """LLaMA's RMSNorm: statistics in float32, cast back before the weight."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * y.type_as(x)


@case(CASTS, lambda d: (d.u(2, 4, 16, lo=1e3, hi=6e4, dtype=torch.float16), d.n(16, dtype=torch.float16)))
def cast_rms_llama_large(x, w):
    """LLaMA's RMSNorm of half inputs near half's maximum (finite thanks to float32 stats)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * y.type_as(x)


@case(CASTS, lambda d: (d.n(2, 4, 16, scale=1e4),), inductor_wrong=True)
def cast_layer_norm_half_overflow(x):
    """LayerNorm of values cast to half: the squared deviations overflow, eager gives 0s."""
    xh = x.half()
    c = xh - xh.mean(-1, keepdim=True)
    var = (c * c).mean(-1, keepdim=True)
    return (c / torch.sqrt(var + 1e-5)).float()


@case(CASTS, lambda d: (d.n(2, 4, 16, dtype=torch.float16), d.n(16, dtype=torch.float16),
                        d.n(16, dtype=torch.float16)))
def cast_layer_norm_float_stats(x, w, b):
    """LayerNorm of half inputs with float32 statistics, cast back before weight and bias."""
    xf = x.float()
    mu = xf.mean(-1, keepdim=True)
    var = ((xf - mu) ** 2).mean(-1, keepdim=True)
    return ((xf - mu) / torch.sqrt(var + 1e-5)).to(x.dtype) * w + b


@case(CASTS, lambda d: (d.u(2, 4, 16, lo=1e3, hi=6e4), d.n(16)))
def cast_rms_half_overflow_weight_half(x, w):
    """Float32 RMSNorm statistics, the normalised value cast to half and weighted in half."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    return y.half() * w.half()


@case(CASTS, lambda d: (d.n(2, 2, 8, 8, scale=100.0, dtype=torch.float16),
                        d.n(2, 2, 8, 8, scale=100.0, dtype=torch.float16),
                        d.n(2, 2, 8, 8, dtype=torch.float16)), inductor_wrong="static", wider=True)
def cast_half_scores_overflow(q, k, v):
    """Half attention whose scores overflow half before the scale: inf, then NaN rows in eager."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.125, -1) @ v


@case(CASTS, lambda d: (d.n(2, 2, 8, 8, scale=100.0, dtype=torch.float16),
                        d.n(2, 2, 8, 8, scale=100.0, dtype=torch.float16),
                        d.n(2, 2, 8, 8, dtype=torch.float16)), inductor_wrong="static", wider=True)
def cast_half_scores_overflow_divided(q, k, v):
    """The same, divided by 64 after the overflow."""
    return torch.softmax(q @ k.transpose(-2, -1) / 64, -1) @ v


@case(CASTS, qkv(scale=3.0))
def cast_autocast_last_matmul_only(q, k, v):
    """Scores and softmax in float32, only the last matmul under ``autocast(bfloat16)``: the
    scores are not rounded to bfloat16."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return p @ v


# ---------------------------------------------------------------------------------------------
# masks: fills, fully masked rows, NaN and inf
# ---------------------------------------------------------------------------------------------


def low_scores(d):
    """q and k whose scores are all about -3e4 (spread ±20): below a -1e4 fill."""
    q = d.n(2, 2, 8, 8, scale=0.02, shift=50.0)
    k = d.n(2, 2, 8, 8, scale=0.02, shift=-75.0)
    return q, k, d.n(2, 2, 8, 8)


@case(MASKS, low_scores)
def mask_causal_fill_1e4_low_scores(q, k, v):
    """``masked_fill(~tril, -1e4)`` over scores near -3e4: the masked entries win the softmax."""
    s = q @ k.transpose(-2, -1)
    return torch.softmax(s.masked_fill(~tril(s.shape[-1]), -1e4), -1) @ v


@case(MASKS, low_scores)
def mask_causal_where_1e4_low_scores(q, k, v):
    """``where(tril, s, -1e4)`` over scores near -3e4."""
    s = q @ k.transpose(-2, -1)
    return torch.softmax(torch.where(tril(s.shape[-1]), s, -1e4), -1) @ v


def rising_scores(d):
    """q and k whose scores rise along the keys from about -3e4 to 0: a key three or more
    places ahead of a query scores 1e4 above the key at the query's own position."""
    q = d.n(2, 2, 8, 8, scale=0.02, shift=50.0)
    k = d.n(2, 2, 8, 8, scale=0.02) - 75.0 * (1 - torch.arange(8.0) / 7).view(8, 1)
    return q, k, d.n(2, 2, 8, 8)


@case(MASKS, rising_scores)
def mask_causal_bias_1e4_rising_scores(q, k, v):
    """An additive causal bias of -1e4 where the masked scores are over 1e4 above the kept
    ones: the masked keys still win the softmax in eager."""
    s = q @ k.transpose(-2, -1)
    bias = torch.zeros(8, 8).masked_fill(~tril(8), -1e4)
    return torch.softmax(s + bias, -1) @ v


@case(MASKS, low_scores)
def mask_bool_fill_1e4_low_scores(q, k, v):
    """A random boolean mask filled with -1e4 over scores near -3e4."""
    s = q @ k.transpose(-2, -1)
    m = torch.arange(8)[None, :] % 3 == 0
    return torch.softmax(s.masked_fill(m, -1e4), -1) @ v


@case(MASKS, low_scores)
def mask_causal_finfo_min_low_scores(q, k, v):
    """``finfo.min`` as the fill (HF style) with a causal mask."""
    s = q @ k.transpose(-2, -1)
    return torch.softmax(s.masked_fill(~tril(8), torch.finfo(s.dtype).min), -1) @ v


def full_rows_mask(d):
    q, k, v = d.qkv()
    m = d.mask(2, 1, 8, 8, p=0.3)
    m[:, :, 2, :] = True
    m[1, :, 5, :] = True
    return q, k, v, m


@case(MASKS, full_rows_mask)
def mask_fill_neg_inf_fully_masked_rows(q, k, v, m):
    """``masked_fill(mask, -inf)`` where some rows are fully masked: NaN rows in eager."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(m, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, full_rows_mask)
def mask_where_neg_inf_fully_masked_rows(q, k, v, m):
    """``where(keep, s, -inf)`` where some rows keep nothing: NaN rows in eager."""
    s = torch.where(~m, q @ k.transpose(-2, -1) * 0.5, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, full_rows_mask)
def mask_fill_then_scale_fully_masked_rows(q, k, v, m):
    """Masked with -inf, then scaled: fully masked rows are NaN in eager."""
    s = (q @ k.transpose(-2, -1)).masked_fill(m, NEG_INF) / math.sqrt(8)
    return torch.softmax(s, -1) @ v


@case(MASKS, full_rows_mask)
def mask_finfo_min_fully_masked_rows(q, k, v, m):
    """``finfo.min`` fill on fully masked rows: uniform weights (finite) in eager."""
    s = q @ k.transpose(-2, -1) * 0.5
    s = s.masked_fill(m, torch.finfo(s.dtype).min)
    return torch.softmax(s, -1) @ v


@case(MASKS, full_rows_mask)
def mask_additive_neg_inf_fully_masked_rows(q, k, v, m):
    """An additive float mask (0 / -inf) with fully masked rows."""
    bias = torch.zeros(m.shape).masked_fill(m, NEG_INF)
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(MASKS, lambda d: (*d.qkv(), d.mask(2, 1, 1, 8, p=0.7)))
def mask_additive_1e9(q, k, v, keep):
    """BERT's additive mask ``(1 - keep) * -1e9``."""
    bias = (1.0 - keep.float()) * -1e9
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(MASKS, lambda d: (*d.qkv(), torch.tensor([8, 0])))
def mask_padding_batch_fully_padded(q, k, v, lengths):
    """A key padding mask from lengths with one sequence of length 0 (NaN in eager)."""
    keep = torch.arange(k.shape[-2])[None, :] < lengths[:, None]
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~keep[:, None, None, :], NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, lambda d: (*d.qkv(), torch.tensor([3, 6])))
def mask_padding_where(q, k, v, lengths):
    """A key padding mask through ``torch.where``."""
    keep = torch.arange(k.shape[-2])[None, :] < lengths[:, None]
    s = torch.where(keep[:, None, None, :], q @ k.transpose(-2, -1) * 0.5, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_causal_neg_inf_bias(q, k, v):
    """An additive causal bias built with ``full(-inf).triu(1)``."""
    n = q.shape[-2]
    bias = torch.full((n, n), NEG_INF).triu(1)
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


def nan_in(which, index):
    def make(d):
        t = list(d.qkv())
        t[which][index] = float("nan")
        return tuple(t)

    return make


@case(MASKS, nan_in(0, (0, 1, 3)), inductor_wrong="static")
def mask_nan_in_q_row(q, k, v):
    """A NaN row of q: that output row is NaN, the others are not."""
    return attend(q, k, v)


@case(MASKS, nan_in(1, (1, 0, 2, 5)))
def mask_nan_in_k(q, k, v):
    """One NaN in k: every row of that head is NaN."""
    return attend(q, k, v)


@case(MASKS, nan_in(2, (0, 0, 4, 1)))
def mask_nan_in_v(q, k, v):
    """One NaN in v: one column of that head is NaN."""
    return attend(q, k, v)


@case(MASKS, nan_in(1, (0, 1, 6, 0)))
def mask_nan_in_masked_key(q, k, v):
    """A NaN in key 6, hidden by the causal mask from queries 0-5: eager's masked_fill replaces
    those NaN scores, so only rows 6 and 7 are NaN."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~tril(8), NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv(), inductor_wrong="static")
def mask_inf_scale(q, k, v):
    """Scores times +inf: inf and NaN logits."""
    return torch.softmax(q @ k.transpose(-2, -1) * float("inf"), -1) @ v


@case(MASKS, qkv(), inductor_wrong="static")
def mask_nan_scale(q, k, v):
    """Scores times NaN: everything NaN."""
    return torch.softmax(q @ k.transpose(-2, -1) * float("nan"), -1) @ v


@case(MASKS, qkv())
def mask_zero_scale(q, k, v):
    """Scores times 0.0: uniform weights (the mean of v)."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.0, -1) @ v


@case(MASKS, qkv(), inductor_wrong="static")
def mask_divide_by_zero(q, k, v):
    """Scores divided by 0.0: ±inf logits (NaN where a row has several +inf)."""
    return torch.softmax(q @ k.transpose(-2, -1) / 0.0, -1) @ v


@case(MASKS, qkv())
def mask_negative_scale(q, k, v):
    """A negative scale: the weights favour the smallest scores."""
    return torch.softmax(q @ k.transpose(-2, -1) * -0.5, -1) @ v


@case(MASKS, lambda d: (*d.qkv(), torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0, 1.0, 0.0, 1.0]).view(1, 1, 8, 1)))
def mask_rowwise_scale_with_zero(q, k, v, scale):
    """A row-wise scale tensor with zeros: those rows are uniform."""
    return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v


@case(MASKS, qkv())
def mask_fill_neg_inf_then_negative_scale(q, k, v):
    """Masked with -inf, then scaled by -1: the masked entries become +inf (NaN rows)."""
    s = (q @ k.transpose(-2, -1)).masked_fill(~tril(8), NEG_INF) * -1.0
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_fill_neg_inf_then_zero_scale(q, k, v):
    """Masked with -inf, then scaled by 0: -inf * 0 is NaN."""
    s = (q @ k.transpose(-2, -1)).masked_fill(~tril(8), NEG_INF) * 0.0
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_where_finite_fill_then_scale(q, k, v):
    """``where(tril, s, -1e4) * 0.01``: the fill is scaled up to -100 with the scores."""
    s = torch.where(tril(8), q @ k.transpose(-2, -1), -1e4) * 0.01
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_fill_pos_inf(q, k, v):
    """``masked_fill(~tril, +inf)``: NaN rows wherever something is masked."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~tril(8), float("inf"))
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_fill_nan(q, k, v):
    """``masked_fill(~tril, nan)``."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~tril(8), float("nan"))
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_tril_diagonal_one(q, k, v):
    """``tril(1)`` keeps one entry above the diagonal: not the causal mask."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~tril(8, diagonal=1), NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, qkv())
def mask_triu_kept(q, k, v):
    """``where(triu, s, -inf)``: an anti-causal mask."""
    keep = torch.ones(8, 8, dtype=torch.bool).triu()
    return torch.softmax(torch.where(keep, q @ k.transpose(-2, -1) * 0.5, NEG_INF), -1) @ v


@case(MASKS, lambda d: (d.n(2, 2, 4, 8), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8)))
def mask_causal_sq_lt_sk_top_left(q, k, v):
    """A (4, 8) ``tril`` mask: causal aligned top-left."""
    m = torch.ones(4, 8, dtype=torch.bool).tril()
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~m, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, lambda d: (d.n(2, 2, 4, 8), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8)))
def mask_causal_sq_lt_sk_bottom_right(q, k, v):
    """A (4, 8) ``tril(4)`` mask: causal aligned bottom-right, as with a KV cache."""
    m = torch.ones(4, 8, dtype=torch.bool).tril(4)
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~m, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, lambda d: (*d.qkv(), d.n(1, 2, 8, 8)))
def mask_additive_bias_with_nan(q, k, v, bias):
    """An additive bias with a NaN entry."""
    bias = bias.clone()
    bias[0, 1, 3, 4] = float("nan")
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(MASKS, lambda d: (d.n(2, 4, 8), d.n(8)))
def mask_rms_inf_input(x, w):
    """RMSNorm of a row holding an inf: NaN in eager (inf * rsqrt(inf))."""
    x = x.clone()
    x[0, 1, 2] = float("inf")
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


@case(MASKS, lambda d: (d.n(2, 4, 8), d.n(8), d.n(8)))
def mask_layer_norm_inf_input(x, w, b):
    """Written-out LayerNorm of a row holding an inf."""
    x = x.clone()
    x[1, 0, 3] = float("inf")
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


@case(MASKS, lambda d: (d.n(2, 4, 8), d.n(8), d.n(8)))
def mask_layer_norm_zero_variance_eps0(x, w, b):
    """Written-out LayerNorm with eps=0 and a constant row: 0/0 = NaN in eager."""
    x = x.clone()
    x[0, 2] = 3.0
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 0.0) * w + b


@case(MASKS, lambda d: (d.n(2, 4, 8), d.n(8), d.n(8)))
def mask_torch_layer_norm_zero_variance_eps0(x, w, b):
    """``F.layer_norm(eps=0)`` of a constant row."""
    x = x.clone()
    x[1, 3] = -2.0
    return F.layer_norm(x, (8,), w, b, eps=0.0)


@case(MASKS, lambda d: (d.n(2, 4, 8), d.n(8)))
def mask_rms_zero_row_eps0(x, w):
    """Written-out RMSNorm with eps=0 and an all-zero row: 0 * inf = NaN in eager."""
    x = x.clone()
    x[0, 0] = 0.0
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * w


@case(MASKS, one(2, 4, 8))
def mask_softmax_all_neg_inf_row(x):
    """``torch.softmax`` of a row that is all -inf: NaN."""
    x = x.clone()
    x[0, 1] = NEG_INF
    return torch.softmax(x, -1)


@case(MASKS, one(2, 4, 8))
def mask_softmax_written_out_all_neg_inf_row(x):
    """The stable softmax written out, on an all -inf row."""
    x = x.clone()
    x[1, 2] = NEG_INF
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


@case(MASKS, one(2, 4, 8))
def mask_softmax_pos_inf_entry(x):
    """A +inf entry: softmax gives NaN on that row in eager."""
    x = x.clone()
    x[0, 0, 3] = float("inf")
    return torch.softmax(x, -1)


def overflowing_row(d):
    q, k, v = d.qkv()
    k = k.abs() + 1
    q[0, 0, 3] = -1e38
    return q, k, v


@case(MASKS, overflowing_row, inductor_wrong="static",
      known_wrong="scores beyond float32's range: torch's attention kernels (used off the fused "
                  "devices) give 0 for a row of -inf scores where eager's softmax gives NaN",
      known_wrong_on=("eager-static", "aot_eager-static"))
def mask_scores_overflow_to_neg_inf_row(q, k, v):
    """A query row whose scores overflow to -inf (finite inputs): softmax of that row is NaN."""
    return attend(q, k, v, scale=0.125)


@case(MASKS, lambda d: (torch.full((2, 2, 8, 8), 7e18), torch.full((2, 2, 8, 8), 7e18), d.n(2, 2, 8, 8)))
def mask_scores_overflow_before_scale(q, k, v):
    """Scores that overflow float32 before the scale brings them back in range: inf in eager."""
    return attend(q, k, v, scale=0.125)


def hidden_key(value, kind):
    def make(d):
        q, k, v = d.qkv()
        k[0, 1, 6] = value
        m = torch.zeros(8, 8, dtype=torch.bool)
        m[:, 6] = True
        m[2, 3] = True
        return q, k, v, (m if kind == "mask" else ~m)

    return make


@case(MASKS, hidden_key(float("nan"), "mask"))
def mask_nan_key_hidden_by_bool_mask(q, k, v, m):
    """A NaN in a key that a boolean mask hides from every query: eager's masked_fill replaces
    the NaN scores, no output is NaN."""
    return torch.softmax((q @ k.transpose(-2, -1) * 0.5).masked_fill(m, NEG_INF), -1) @ v


@case(MASKS, hidden_key(float("inf"), "keep"))
def mask_inf_key_hidden_by_where(q, k, v, keep):
    """An inf in a key that ``where`` hides from every query: no output is NaN in eager."""
    return torch.softmax(torch.where(keep, q @ k.transpose(-2, -1) * 0.5, NEG_INF), -1) @ v


def padded_garbage(d):
    q, k, v = d.qkv()
    k[1, :, 5:] = float("nan")
    v[1, :, 5:] = float("inf")
    return q, k, v, torch.tensor([8, 5])


@case(MASKS, padded_garbage)
def mask_padding_hides_nan_keys(q, k, v, lengths):
    """Padded key positions holding NaN keys and inf values behind a padding mask: the scores
    are replaced by -inf, but 0 * inf in the second matmul is NaN in eager."""
    keep = torch.arange(8)[None, :] < lengths[:, None]
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~keep[:, None, None, :], NEG_INF)
    return torch.softmax(s, -1) @ v


def inf_value(d):
    q, k, v = d.qkv()
    v[0, 0, 7, 1] = float("inf")
    return q, k, v


@case(MASKS, inf_value)
def mask_inf_value_behind_causal_mask(q, k, v):
    """An inf in the last value row: the causal mask gives it weight 0 in the earlier rows, and
    0 * inf is NaN in eager's second matmul."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~tril(8), NEG_INF)
    return torch.softmax(s, -1) @ v


def causal_then_other(d):
    q, k, v = d.qkv()
    return q, k, v, tril(8)


def other_mask(d):
    q, k, v = d.qkv()
    m = d.mask(8, 8, p=0.6)
    m[:, 0] = True
    return q, k, v, m


@case(MASKS, causal_then_other, again=other_mask)
def mask_input_causal_then_other(q, k, v, keep):
    """A mask passed in: causal on the first call, another on the second (same graph)."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~keep, NEG_INF)
    return torch.softmax(s, -1) @ v


@case(MASKS, lambda d: (*d.qkv(), 0.5), again=lambda d: (*d.qkv(), -1.0))
def mask_scale_after_mask_float_input(q, k, v, scale):
    """A -inf mask, then a scale passed in as a Python float: 0.5, then -1.0 (which turns -inf
    into +inf and the masked rows into NaN)."""
    s = (q @ k.transpose(-2, -1)).masked_fill(~tril(8), NEG_INF) * scale
    return torch.softmax(s, -1) @ v


def nan_row_long(d):
    q, k, v = d.qkv(b=1, s=20)
    q[0, 1, 4] = float("nan")
    return q, k, v


@case(MASKS, qkv(b=1), again=nan_row_long)
def mask_nan_q_row_on_a_longer_call(q, k, v):
    """Clean inputs of length 8, then length 20 with a NaN query row."""
    return attend(q, k, v)


@case(MASKS, lambda d: (*d.qkv(), torch.tensor([8, 5])), again=lambda d: (*d.qkv(), torch.tensor([0, 3])))
def mask_padding_empty_on_second_call(q, k, v, lengths):
    """Padding lengths 8 and 5, then 0 and 3 (a fully masked batch on the second call)."""
    keep = torch.arange(8)[None, :] < lengths[:, None]
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(~keep[:, None, None, :], NEG_INF)
    return torch.softmax(s, -1) @ v


def neg_inf_rows_bias(d):
    q, k, v = d.qkv()
    bias = d.n(1, 1, 8, 8)
    bias[..., 3, :] = NEG_INF
    return q, k, v, bias


@case(MASKS, lambda d: (*d.qkv(), d.n(1, 1, 8, 8)), again=neg_inf_rows_bias)
def mask_bias_input_empty_row_on_second_call(q, k, v, bias):
    """An additive bias passed in: finite, then with a row of -inf (NaN in eager)."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


# ---------------------------------------------------------------------------------------------
# near_miss: look like a pattern, compute something else
# ---------------------------------------------------------------------------------------------


@case(NEAR_MISS, qkv(), inductor_wrong="static")
def near_softmax_dim_minus2(q, k, v):
    """Softmax over the query dim instead of the key dim."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=-2) @ v


@case(NEAR_MISS, qkv(), inductor_wrong="static")
def near_softmax_dim0(q, k, v):
    """Softmax over the batch dim."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=0) @ v


@case(NEAR_MISS, qkv(), inductor_wrong="static")
def near_softmax_dim1(q, k, v):
    """Softmax over the heads dim."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=1) @ v


@case(NEAR_MISS, lambda d: (*d.qkv(), d.n(2, 8, 8)))
def near_bias_after_softmax(q, k, v, bias):
    """The bias is added to the probabilities, not the scores."""
    return (torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) + bias) @ v


@case(NEAR_MISS, qkv())
def near_k_not_transposed(q, k, v):
    """``q @ k`` without the transpose (valid because S == D)."""
    return torch.softmax(q @ k * 0.5, -1) @ v


@case(NEAR_MISS, qkv())
def near_v_transposed(q, k, v):
    """``softmax(...) @ v.mT`` (valid because S == D)."""
    return attend(q, k, v.mT)


@case(NEAR_MISS, qkv())
def near_probs_on_the_right(q, k, v):
    """``v @ softmax(...)``: the matmul the other way round."""
    return v @ torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)


@case(NEAR_MISS, qkv())
def near_scale_after_softmax(q, k, v):
    """The scale is applied to the probabilities."""
    return torch.softmax(q @ k.transpose(-2, -1), -1) * 0.5 @ v


@case(NEAR_MISS, qkv())
def near_log_softmax(q, k, v):
    """``log_softmax`` instead of softmax."""
    return torch.log_softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v


@case(NEAR_MISS, qkv())
def near_masked_fill_keeps_the_wrong_side(q, k, v):
    """``masked_fill(tril, -inf)``: masks the lower triangle, not the upper (diagonal included,
    so the last column keeps the only entries of the first rows)."""
    s = (q @ k.transpose(-2, -1) * 0.5).masked_fill(tril(8, diagonal=-1), NEG_INF)
    return torch.softmax(s, -1) @ v


@case(NEAR_MISS, lambda d: (*d.qkv(), d.n(2, 2, 8, 8)))
def near_add_with_alpha(q, k, v, bias):
    """``torch.add(s, bias, alpha=2)``: the bias counts twice."""
    return torch.softmax(torch.add(q @ k.transpose(-2, -1), bias, alpha=2), -1) @ v


@case(NEAR_MISS, qkv(scale=3.0))
def near_floor_division_scale(q, k, v):
    """``div(s, 2, rounding_mode="floor")``: a rounded division."""
    s = torch.div(q @ k.transpose(-2, -1), 2, rounding_mode="floor")
    return torch.softmax(s, -1) @ v


@case(NEAR_MISS, qkv(), rng=True)
def near_dropout_training(q, k, v):
    """Dropout that is switched on (p=0.5, training=True), twice: not attention without it."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    return F.dropout(p, 0.5, training=True) @ v, F.dropout(p, 0.5, training=True) @ v


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8)))
def near_rms_eps_outside_sqrt(x, w):
    """``x / (sqrt(mean(x²)) + eps)``: eps outside the root."""
    return x / (torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + 1e-2) * w


@case(NEAR_MISS, lambda d: (d.n(4, 4, 8), d.n(8)))
def near_rms_mean_over_dim0(x, w):
    """The mean square over dim 0, not the last dim."""
    return x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + 1e-6) * w


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8)))
def near_rms_without_eps(x, w):
    """``x * rsqrt(mean(x²))`` without eps (differs from any eps > 0 on small rows)."""
    x = x.clone()
    x[0, 0] *= 1e-4
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * w


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8)))
def near_rms_sum_not_mean(x, w):
    """The sum of squares instead of the mean."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6) * w


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8)))
def near_rms_cube(x, w):
    """``x.pow(3)`` in place of the square."""
    return x * torch.rsqrt(x.pow(3).abs().mean(-1, keepdim=True) + 1e-6) * w


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(4, 8)))
def near_rms_weight_matrix(x, w):
    """A weight that is not a vector over the last dim (a gate)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8), d.n(8)))
def near_layer_norm_unbiased_var(x, w, b):
    """LayerNorm with the unbiased variance (``torch.var(unbiased=True)``)."""
    mu = x.mean(-1, keepdim=True)
    var = torch.var(x, -1, unbiased=True, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8), d.n(8)))
def near_layer_norm_mean_over_other_dim(x, w, b):
    """The mean over dim -2, the variance over the last dim."""
    mu = x.mean(-2, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(8), d.n(8)))
def near_layer_norm_eps_outside_sqrt(x, w, b):
    """``(x - mu) / (sqrt(var) + eps)``."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / (torch.sqrt(var) + 1e-1) * w + b


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8, shift=3.0),))
def near_layer_norm_uncentred_numerator(x):
    """``x / sqrt(var + eps)``: the numerator is not centred."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return x / torch.sqrt(var + 1e-5)


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(2, 4, 8)))
def near_layer_norm_centred_by_other_mean(x, y):
    """The numerator centred by the mean of another tensor."""
    c = x - y.mean(-1, keepdim=True)
    var = ((x - x.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
    return c / torch.sqrt(var + 1e-5)


@case(NEAR_MISS, one(2, 4, 8, scale=3.0))
def near_softmax_max_over_other_dim(x):
    """``exp(x - amax(x, -2)) / sum(..., -1)``: the shift differs within a row."""
    e = (x - x.amax(-2, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


@case(NEAR_MISS, one(2, 4, 8))
def near_softmax_sum_over_other_dim(x):
    """The normaliser summed over dim -2."""
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-2, keepdim=True)


@case(NEAR_MISS, one(2, 4, 8, scale=60.0))
def near_softmax_without_max(x):
    """``exp(x) / sum(exp(x))`` without the max: overflows to NaN in eager for large x."""
    e = x.exp()
    return e / e.sum(-1, keepdim=True)


@case(NEAR_MISS, lambda d: (d.n(2, 4, 8), d.n(2, 4, 8)))
def near_softmax_max_of_other_tensor(x, y):
    """The max subtracted is another tensor's."""
    e = (x - y.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


@case(NEAR_MISS, qkv(), rng=True, rng_pairs=())
def near_dropout_p0_then_draw(q, k, v):
    """Dropout with p=0 in training mode, then a random draw: the draw must be the one eager
    makes (whether the dropout consumed random numbers or not)."""
    p = F.dropout(torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1), 0.0, training=True)
    return p @ v, torch.rand(8)


class DropoutAttention(nn.Module):
    """Attention with ``nn.Dropout(0.1)`` on the probabilities, in training mode, applied twice."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.1)

    def forward(self, q, k, v):
        p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
        return self.drop(p) @ v, self.drop(p) @ v


case(NEAR_MISS, qkv(), rng=True, name="near_dropout_module_training")(DropoutAttention)


# ---------------------------------------------------------------------------------------------
# rule_body: scalars and shapes a rule body must handle
# ---------------------------------------------------------------------------------------------


@case(RULE_BODY, qkv())
def body_python_scalar_bias(q, k, v):
    """``scores + 3.0``: a Python scalar as the additive bias."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + 3.0, -1) @ v


@case(RULE_BODY, qkv())
def body_python_int_bias(q, k, v):
    """``scores + 3``: an int bias."""
    return torch.softmax(q @ k.transpose(-2, -1) + 3, -1) @ v


@case(RULE_BODY, lambda d: (*d.qkv(), d.n(3, 1, 1, 8, 8)))
def body_bias_broadcast_to_5d(q, k, v, bias):
    """``scores[None] + bias5d``: the bias broadcasts the scores up to 5-d."""
    s = (q @ k.transpose(-2, -1) * 0.5)[None] + bias
    return torch.softmax(s, -1) @ v


@case(RULE_BODY, lambda d: (*d.qkv(), d.n(3, 2, 2, 8, 8)))
def body_bias_5d_scores_4d(q, k, v, bias):
    """A 5-d bias on 4-d scores, v broadcast along the new dim."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(RULE_BODY, qkv(b=4, h=1))
def body_attention_3d(q, k, v):
    """Attention over 3-d tensors (batch, seq, dim)."""
    q, k, v = q[:, 0], k[:, 0], v[:, 0]
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v


@case(RULE_BODY, lambda d: (d.n(8, 8), d.n(8, 8), d.n(8, 8)))
def body_attention_2d(q, k, v):
    """Attention over 2-d tensors (seq, dim)."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v


@case(RULE_BODY, lambda d: tuple(d.n(2, 2, 2, 4, 8) for _ in range(3)))
def body_attention_5d(q, k, v):
    """Attention over 5-d tensors."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v


@case(RULE_BODY, qkv(d=1))
def body_head_dim_1(q, k, v):
    """Head dim 1."""
    return attend(q, k, v, scale=1.0)


@case(RULE_BODY, qkv(b=1, h=1, s=4, d=300, scale=0.1))
def body_head_dim_300(q, k, v):
    """Head dim 300 (beyond what fused kernels handle)."""
    return attend(q, k, v, scale=1 / math.sqrt(300))


@case(RULE_BODY, lambda d: (d.n(2, 2, 3, 8), d.n(2, 2, 7, 8), d.n(2, 2, 7, 8)))
def body_sq_ne_sk(q, k, v):
    """3 queries over 7 keys."""
    return attend(q, k, v)


@case(RULE_BODY, lambda d: (d.n(2, 2, 5, 8), d.n(2, 2, 6, 8), d.n(2, 2, 6, 16)))
def body_value_dim_differs(q, k, v):
    """v's head dim (16) differs from q's and k's (8)."""
    return attend(q, k, v)


@case(RULE_BODY, lambda d: (d.n(2, 2, 8, 8), d.n(1, 2, 8, 8), d.n(1, 2, 8, 8)))
def body_batch_broadcast(q, k, v):
    """k and v with batch 1 broadcast against q's batch 2 by the matmuls."""
    return attend(q, k, v)


@case(RULE_BODY, qkv(dtype=torch.float64))
def body_float64(q, k, v):
    """Attention in float64."""
    return attend(q, k, v, scale=1 / math.sqrt(8))


@case(RULE_BODY, lambda d: (d.n(2, 2, 8, 8), d.n(2, 2, 8, 8), d.n(2, 2, 8, 8, dtype=torch.float64)),
      tolerance=(1e-4, 1e-4))
def body_mixed_dtypes(q, k, v):
    """Float32 scores and probabilities, a float64 v (the probabilities are cast)."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1).to(v.dtype) @ v


@case(RULE_BODY, lambda d: (*d.qkv(), torch.tensor(0.5, dtype=torch.float64)))
def body_scale_float64_tensor(q, k, v, scale):
    """A 0-d float64 tensor as the scale (the scores stay float32)."""
    return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v


@case(RULE_BODY, qkv(s=0))
def body_zero_length(q, k, v):
    """Sequence length 0."""
    return attend(q, k, v)


@case(RULE_BODY, lambda d: (d.n(2, 2, 4, 8), d.n(2, 2, 0, 8), d.n(2, 2, 0, 8)))
def body_zero_keys(q, k, v):
    """No keys: softmax over an empty dim, the output all zeros."""
    return attend(q, k, v)


@case(RULE_BODY, qkv(b=0))
def body_batch_0(q, k, v):
    """Batch 0."""
    return attend(q, k, v)


@case(RULE_BODY, qkv())
def body_scale_from_shape(q, k, v):
    """The scale computed from a size: ``q.shape[-1] ** -0.5`` (symbolic when dynamic)."""
    return torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, -1) @ v


@case(RULE_BODY, qkv())
def body_scale_sqrt_of_size(q, k, v):
    """``/ math.sqrt(q.size(-1))``."""
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), -1) @ v


@case(RULE_BODY, qkv())
def body_int_divisor(q, k, v):
    """Divided by an int (true division)."""
    return torch.softmax(q @ k.transpose(-2, -1) / 3, -1) @ v


@case(RULE_BODY, qkv())
def body_softmax_positive_dim(q, k, v):
    """``softmax(dim=3)`` on 4-d scores: the last dim spelled positively."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=3) @ v


@case(RULE_BODY, lambda d: (*d.qkv(), d.ints(3, 2, 1, 8, 8)))
def body_int_bias(q, k, v, bias):
    """An int64 bias tensor (type promotion keeps float32 scores)."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + bias, -1) @ v


@case(RULE_BODY, lambda d: (*d.qkv(), d.mask(2, 1, 1, 8)))
def body_bool_bias(q, k, v, m):
    """A boolean tensor added to the scores."""
    return torch.softmax(q @ k.transpose(-2, -1) * 0.5 + m, -1) @ v


@case(RULE_BODY, one(2, 2, 8, 8))
def body_self_attention_one_tensor(x):
    """q, k and v are one tensor."""
    return attend(x, x, x)


@case(RULE_BODY, qkv())
def body_probs_also_returned(q, k, v):
    """The probabilities are returned beside the output."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    return p @ v, p


@case(RULE_BODY, qkv())
def body_scores_also_returned(q, k, v):
    """The scores are returned beside the output."""
    s = q @ k.transpose(-2, -1) * 0.5
    return torch.softmax(s, -1) @ v, s


@case(RULE_BODY, lambda d: (*d.qkv(), d.n(2, 2, 8, 8)))
def body_probs_times_two_values(q, k, v, v2):
    """One softmax multiplied by two different values."""
    p = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1)
    return p @ v, p @ v2


@case(RULE_BODY, lambda d: (*d.qkv(), torch.tensor(0.5)), again=lambda d: (*d.qkv(), torch.tensor(0.0)))
def body_scale_tensor_values_change(q, k, v, scale):
    """A 0-d scale tensor: 0.5, then 0 (uniform weights) on the second call."""
    return torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v


@case(RULE_BODY, lambda d: (d.n(2, 4, 8), d.n(8), 1e-6), again=lambda d: (d.n(2, 4, 8), d.n(8), 1.0))
def body_rms_eps_float_input(x, w, eps):
    """RMSNorm with eps passed in as a Python float: 1e-6, then 1.0."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


@case(RULE_BODY, lambda d: (d.n(2, 2, 8, 8), d.n(8, 8), d.n(8, 8)))
def body_shared_2d_keys(q, k, v):
    """4-d queries over 2-d keys and values shared by every batch and head (matmul broadcasts)."""
    return attend(q, k, v)


@case(RULE_BODY, qkv())
def body_two_layers(q, k, v):
    """Two attentions in a row, the second over the first's output."""
    return attend(attend(q, k, v), k, v)


# ---------------------------------------------------------------------------------------------
# plain: nothing to rewrite
# ---------------------------------------------------------------------------------------------


@case(PLAIN, one(3, 4, 5))
def plain_reductions(x):
    """Sums, means, maxima, products, variances over different dims."""
    return x.sum(0), x.mean((1, 2)), x.amax(-1), x.prod(1), x.var(-1), x.std(0, unbiased=False)


@case(PLAIN, lambda d: (d.n(5, 4), d.ints(4, 3)))
def plain_indexing(x, idx):
    """Advanced indexing, ``index_select``, ``gather``, boolean masks and strided slices."""
    return x[idx], x.index_select(1, idx), x.gather(0, idx[None].expand(2, 3)), x[x > 0], x.flip(-1)[1:4:2]


@case(PLAIN, one(2, 6))
def plain_control_flow_on_shape(x):
    """Python branches and a loop on sizes."""
    y = x * 2 if x.shape[0] > 1 else x - 1
    for _ in range(x.shape[-1] // 3):
        y = y.sin() + y
    return y


@case(PLAIN, one(3, 3))
def plain_list_output(x):
    """A list of outputs."""
    return [x + 1, x * 2, x.t()]


@case(PLAIN, one(3, 3))
def plain_dict_output(x):
    """A dict of outputs, nested with a tuple."""
    return {"a": x.exp(), "b": (x.abs(), x.neg())}


@case(PLAIN, one(3, 3))
def plain_in_place_on_output(x):
    """An output updated in place before it is returned."""
    y = x * 2
    y.add_(1)
    y[0] = 0
    return y


@case(PLAIN, one(3, 3))
def plain_return_input(x):
    """The input itself is returned beside a result."""
    return x, x + 1


@case(PLAIN, one(3, 3))
def plain_return_same_twice(x):
    """One tensor returned twice."""
    y = x.sin()
    return y, y


@case(PLAIN, one(3, 3))
def plain_return_mutated_input(x):
    """An input mutated in place and returned."""
    x.mul_(2)
    return x


@case(PLAIN, one(2, 8))
def plain_sort_topk_cumsum(x):
    """Sorting, top-k and cumulative sums (values and indices)."""
    v, i = x.sort(-1)
    tv, ti = x.topk(3, -1)
    return v, i, tv, ti, x.cumsum(-1)


@case(PLAIN, lambda d: (d.n(4, 3), d.ints(4, 4, 3)))
def plain_scatter_add(x, idx):
    """``scatter_add`` into zeros."""
    return torch.zeros(4, 3).scatter_add(0, idx, x)


@case(PLAIN, one(3, 4))
def plain_where_clamp(x):
    """``where``, ``clamp``, ``maximum``."""
    return torch.where(x > 0, x, x * 0.1).clamp(-0.5, 0.5), torch.maximum(x, x.flip(0))


@case(PLAIN, lambda d: (d.n(2, 3, 4), d.n(4, 5)))
def plain_einsum(x, w):
    """``einsum`` contractions."""
    return torch.einsum("bij,jk->bik", x, w), torch.einsum("bij->bj", x)


@case(PLAIN, lambda d: (d.n(1, 2, 6, 6), d.n(3, 2, 3, 3)))
def plain_conv2d(x, w):
    """A small convolution with padding."""
    return F.conv2d(x, w, padding=1).relu()


class LinearGelu(nn.Module):
    """Linear, GELU, Linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        return self.b(F.gelu(self.a(x)))


case(PLAIN, one(3, 8, grad=True), train=True, name="plain_linear_gelu_module")(LinearGelu)


@case(PLAIN, lambda d: (d.ints(20, 3, 4),))
def plain_integer_arithmetic(x):
    """Integer floor division, remainder and bit operations."""
    return x // 3, x % 3, x & 5, x * x - 7


@case(PLAIN, lambda d: (d.mask(3, 4), d.mask(3, 4)))
def plain_boolean_ops(a, b):
    """Boolean logic and reductions."""
    return a & b, a | ~b, a ^ b, a.any(-1), a.all(0)


@case(PLAIN, lambda d: (d.n(2, 3), d.n(2, 3)))
def plain_cat_stack_split(x, y):
    """``cat``, ``stack``, ``split`` and ``chunk``."""
    c = torch.cat([x, y], 0)
    return torch.stack([x, y], -1), c.split(1, 0), c.chunk(2, 1)


@case(PLAIN, one(3, 4))
def plain_python_scalars(x):
    """Sizes returned as Python ints beside a tensor."""
    return x.sum(), x.shape[0], x.dim()


@case(PLAIN, lambda d: (d.n(3, 4), 2.5, 3))
def plain_python_scalar_inputs(x, a, n):
    """Python float and int inputs."""
    return x * a + n, x.pow(n)


@case(PLAIN, one(2, 3, 4))
def plain_view_chain(x):
    """Views, reshapes, permutes, ``contiguous``, ``expand`` and ``flatten``."""
    y = x.permute(2, 0, 1).contiguous().view(4, 6).reshape(2, 12)
    return y, x.unsqueeze(1).expand(2, 5, 3, 4).flatten(0, 1), x.transpose(0, 2).reshape(-1)


@case(PLAIN, one(4, 4))
def plain_softmax_call(x):
    """A single ``torch.softmax`` call (the whole program is a softmax)."""
    return torch.softmax(x, -1), F.softmax(x, dim=0)


@case(PLAIN, lambda d: (d.n(2, 4, 16), d.n(16), d.n(16)))
def plain_torch_norms(x, w, b):
    """``F.layer_norm`` and ``F.rms_norm`` calls."""
    return F.layer_norm(x, (16,), w, b), F.rms_norm(x, (16,), w, 1e-6)


BY_NAME: dict[str, Case] = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"

__all__ = ["BY_NAME", "CASES", "CATEGORIES", "Case", "Draw"]
