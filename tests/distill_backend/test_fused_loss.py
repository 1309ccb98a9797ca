"""The fused loss on hidden states against the unfused reference, and what it never allocates."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from distill_backend.losses import LOSS_KINDS, Head, LossConfig, fused_loss, token_scores, unfused_loss

CASES = [  # (kind, tau, beta): every divergence, the clip on and off, the JSD interior and endpoints
    ("forward_kl", 0.05, 0.5), ("forward_kl", None, 0.5), ("reverse_kl", 0.05, 0.5), ("jsd", 0.05, 0.3),
    ("jsd", 0.05, 0.0), ("jsd", 0.05, 1.0), ("sampled_token", 0.05, 0.5),
]


def _case(seed: int, batch=3, length=6, hidden=5, vocab=13, dtype=torch.float64, bias=True):
    gen = torch.Generator().manual_seed(seed)
    student = (torch.randn(batch, length, hidden, generator=gen, dtype=dtype) * 1.5).requires_grad_(True)
    teacher = torch.randn(batch, length, hidden + 2, generator=gen, dtype=dtype)  # the teacher may be wider
    weight = torch.randn(vocab, hidden, generator=gen, dtype=dtype).requires_grad_(True)
    s_bias = (torch.randn(vocab, generator=gen, dtype=dtype) * 0.5).requires_grad_(True) if bias else None
    t_head = Head(torch.randn(vocab, hidden + 2, generator=gen, dtype=dtype), None)
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    distill = torch.rand(batch, length, generator=gen) > 0.35
    sft = ~distill & (torch.rand(batch, length, generator=gen) > 0.3)
    return student, teacher, Head(weight, s_bias), t_head, tokens, distill, sft


def _grads(out, student, head):
    inputs = [student, head.weight] + ([head.bias] if head.bias is not None else [])
    return torch.autograd.grad(out.loss, inputs)


@pytest.mark.parametrize("kind, tau, beta", CASES)
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("with_sft", [False, True])
@pytest.mark.parametrize("tiles", [(256, 2**22), (4, 12), (2, 5)])  # one tile; rows and vocabulary split
def test_fused_equals_unfused_values_and_gradients(kind, tau, beta, temperature, with_sft, tiles):
    student, teacher, head, t_head, tokens, distill, sft = _case(0)
    config = LossConfig(kind=kind, tau=tau, beta=beta, temperature=temperature, chunk_size=tiles[0],
                        chunk_elements=tiles[1])
    sft_mask = sft if with_sft else None
    fused = fused_loss(student, teacher, head, t_head, tokens, distill, config, sft_mask, sft_weight=0.7)
    reference = unfused_loss(student, teacher, head, t_head, tokens, distill, config, sft_mask, sft_weight=0.7)
    for name in fused._fields:
        torch.testing.assert_close(getattr(fused, name).detach(), getattr(reference, name).detach(),
                                   rtol=1e-10, atol=1e-12, msg=name)
    for ours, theirs in zip(_grads(fused, student, head), _grads(reference, student, head)):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_mixed_loss_is_distill_plus_weighted_cross_entropy_and_sft_alone_works():
    student, teacher, head, t_head, tokens, distill, sft = _case(1)
    config = LossConfig(kind="reverse_kl")
    mixed = fused_loss(student, teacher, head, t_head, tokens, distill, config, sft, sft_weight=0.5)
    assert mixed.loss.item() == pytest.approx(mixed.distill.item() + 0.5 * mixed.sft.item(), rel=1e-12)
    logits = torch.nn.functional.linear(student, *head).detach()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
    assert mixed.sft.item() == pytest.approx(nll[sft].mean().item(), rel=1e-10)
    alone = fused_loss(student, None, head, None, tokens, torch.zeros_like(distill), config, sft)
    assert alone.loss.item() == pytest.approx(alone.sft.item(), rel=1e-12) and alone.distill.item() == 0.0
    assert not alone.per_token.any()


def test_tied_embeddings_get_both_gradients():
    """A tied output head (the tiny models') receives the loss gradient plus the embedding's."""
    vocab, hidden = 11, 4
    embedding = torch.nn.Embedding(vocab, hidden).double()
    ids = torch.randint(0, vocab, (2, 5), generator=torch.Generator().manual_seed(2))
    teacher = torch.randn(2, 5, hidden, dtype=torch.float64)
    mask = torch.ones(2, 5, dtype=torch.bool)
    grads = []
    for fn in (fused_loss, unfused_loss):
        embedding.zero_grad()
        out = fn(embedding(ids).tanh(), teacher, Head(embedding.weight), Head(embedding.weight.detach()), ids, mask,
                 LossConfig(kind="forward_kl", tau=None, chunk_size=3, chunk_elements=9))
        out.loss.backward()
        grads.append(embedding.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_gradcheck_hidden_weight_and_bias(kind):
    student, teacher, head, t_head, tokens, distill, sft = _case(3, batch=2, length=3, hidden=3, vocab=5)
    config = LossConfig(kind=kind, tau=0.3, beta=0.3, temperature=0.8, chunk_size=2, chunk_elements=4)

    def loss(hidden, weight, bias):
        return fused_loss(hidden, teacher, Head(weight, bias), t_head, tokens, distill, config, sft, 0.5).loss

    assert torch.autograd.gradcheck(loss, (student, head.weight, head.bias), eps=1e-6, atol=1e-6)


def test_bf16_matches_the_unfused_reference_within_bf16_tolerance():
    student, teacher, head, t_head, tokens, distill, sft = _case(4, hidden=16, vocab=40, dtype=torch.float32)
    cast = [student.detach().bfloat16().requires_grad_(True), teacher.bfloat16(),
            Head(head.weight.detach().bfloat16().requires_grad_(True), None), Head(t_head.weight.bfloat16(), None)]
    config = LossConfig(kind="forward_kl", tau=0.05, temperature=1.1, chunk_size=4, chunk_elements=40)
    fused = fused_loss(cast[0], cast[1], cast[2], cast[3], tokens, distill, config, sft)
    reference = unfused_loss(cast[0], cast[1], cast[2], cast[3], tokens, distill, config, sft)
    assert fused.loss.dtype == torch.float32
    assert fused.loss.item() == pytest.approx(reference.loss.item(), rel=2e-3)
    for ours, theirs in zip(_grads(fused, cast[0], cast[2]), _grads(reference, cast[0], cast[2])):
        assert ours.dtype == torch.bfloat16
        torch.testing.assert_close(ours.float(), theirs.float(), rtol=5e-2, atol=2e-3)


class _LargestAllocation(TorchDispatchMode):
    """Records the largest tensor any aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_no_batch_by_vocabulary_tensor_is_ever_allocated(kind):
    """Forward and backward: nothing larger than a tile, the weight or the hidden states (B x T x V
    would be 16x larger than any of them here)."""
    batch, length, hidden, vocab = 8, 16, 8, 64
    student, teacher, head, t_head, tokens, distill, sft = _case(5, batch, length, hidden, vocab, torch.float32)
    config = LossConfig(kind=kind, chunk_size=16, chunk_elements=16 * 16)
    with _LargestAllocation() as probe:
        out = fused_loss(student, teacher, head, t_head, tokens, distill, config, sft)
        _grads(out, student, head)
    bound = max(config.chunk_elements, vocab * hidden, batch * length * (hidden + 2))
    assert probe.largest <= bound < batch * length * vocab
    with _LargestAllocation() as naive:
        _grads(unfused_loss(student, teacher, head, t_head, tokens, distill, config, sft), student, head)
    assert naive.largest >= batch * length * vocab  # the probe does see full logits when they exist


def test_no_grad_mode_and_no_rows():
    student, teacher, head, t_head, tokens, distill, _ = _case(6)
    config = LossConfig(kind="reverse_kl")
    with torch.no_grad():
        measured = fused_loss(student, teacher, head, t_head, tokens, distill, config)
    assert not measured.loss.requires_grad
    trained = fused_loss(student, teacher, head, t_head, tokens, distill, config)
    assert measured.loss.item() == pytest.approx(trained.loss.item(), rel=1e-12)
    empty = fused_loss(student, teacher, head, t_head, tokens, torch.zeros_like(distill), config)
    grads = _grads(empty, student, head)
    assert empty.loss.item() == 0.0 and all(not g.any() for g in grads)


def test_token_scores_equal_log_softmax_and_per_position_values():
    student, _, head, _, tokens, distill, _ = _case(7)
    scores = token_scores(student.detach(), head.weight.detach(), head.bias.detach(), tokens, distill,
                          per_position=lambda logits: logits.amax(-1), chunk_elements=2 * 13)
    logits = torch.nn.functional.linear(student, *head).detach()
    expected = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(scores.logprobs, torch.where(distill, expected, 0.0))
    torch.testing.assert_close(scores.extra, torch.where(distill, logits.amax(-1), 0.0))


@pytest.mark.parametrize("kind, temperature", list(itertools.product(["forward_kl", "sampled_token"], [0.5, 2.0])))
def test_temperature_scales_both_logits_and_the_gradient_is_for_the_raw_ones(kind, temperature):
    student, teacher, head, t_head, tokens, distill, _ = _case(8, bias=False)
    tempered = fused_loss(student, teacher, head, t_head, tokens, distill,
                          LossConfig(kind=kind, tau=None, temperature=temperature))
    scaled = fused_loss(student, teacher, Head(head.weight / temperature), Head(t_head.weight / temperature), tokens,
                        distill, LossConfig(kind=kind, tau=None))
    assert tempered.loss.item() == pytest.approx(scaled.loss.item(), rel=1e-10)
    (grad_tempered,) = torch.autograd.grad(tempered.loss, student)
    (grad_scaled,) = torch.autograd.grad(scaled.loss, student)
    torch.testing.assert_close(grad_tempered, grad_scaled)
