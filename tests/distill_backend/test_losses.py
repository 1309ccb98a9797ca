"""Tests of distill_backend.losses: hand-computed values, tiling, masking, dtypes, gradients.

The logits-level cases run the fused path with an identity output head (hidden states = logits),
so a gradient with respect to the hidden states is the gradient with respect to the logits.
"""

from __future__ import annotations

import math

import pytest
import torch

from distill_backend.losses import (
    LOSS_KINDS,
    Head,
    LossConfig,
    LossOutput,
    forward_kl_clipped,
    fused_loss,
    generalized_jsd,
    reverse_kl,
    sampled_token_loss,
)
from exposure_env.errors import ConfigError


def distillation_loss(student_logits, teacher_logits, mask, *, kind="forward_kl", tau=0.05, beta=0.5,
                      sampled_tokens=None, temperature=1.0, chunk_size=256, chunk_elements=2**22) -> LossOutput:
    """The fused loss on logits: an identity head, so hidden states are the logits."""
    config = LossConfig(kind=kind, tau=tau, beta=beta, temperature=temperature, chunk_size=chunk_size,
                        chunk_elements=chunk_elements)
    if student_logits.dim() != 3:
        raise ValueError("student_logits must have shape (B, T, V)")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError("teacher_logits must have the student's shape")
    if kind == "sampled_token" and sampled_tokens is None:
        raise ConfigError("sampled_tokens", "a (B, T) tensor of token ids when loss='sampled_token'", None)
    eye = torch.eye(student_logits.shape[-1], dtype=student_logits.dtype)
    tokens = sampled_tokens if sampled_tokens is not None else torch.zeros(student_logits.shape[:2], dtype=torch.long)
    return fused_loss(student_logits, teacher_logits, Head(eye), Head(eye.to(teacher_logits.dtype)), tokens,
                      mask.bool(), config)

LN2 = math.log(2.0)
P_TEACHER = [0.5, 0.25, 0.25]
Q_STUDENT = [0.25, 0.5, 0.25]


def _logits(probs: list[float], dtype=torch.float64) -> torch.Tensor:
    """Logits whose softmax is exactly ``probs`` (up to rounding), shape (1, 1, V)."""
    return torch.tensor(probs, dtype=dtype).log().reshape(1, 1, -1)


def _one_position(kind: str, **kwargs) -> tuple[LossOutput, torch.Tensor]:
    student = _logits(Q_STUDENT).requires_grad_(True)
    teacher = _logits(P_TEACHER)
    mask = torch.ones(1, 1, dtype=torch.bool)
    out = distillation_loss(student, teacher, mask, kind=kind, **kwargs)
    out.loss.backward()
    return out, student.grad.reshape(-1)


def _random_case(seed: int, batch=3, length=7, vocab=11, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, length, vocab, generator=gen, dtype=dtype) * 2
    teacher = torch.randn(batch, length, vocab, generator=gen, dtype=dtype) * 2
    mask = torch.rand(batch, length, generator=gen) > 0.3
    mask[0, 0] = True  # at least one valid token
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    return student, teacher, mask, tokens


def _reference(kind: str, student, teacher, mask, tokens, tau=0.05, beta=0.5) -> torch.Tensor:
    """Unchunked pooled mean of the pure per-position function, with plain autograd."""
    per_position = LossConfig(kind=kind, tau=tau, beta=beta).per_position_fn()(student, teacher, tokens)
    return per_position[mask].sum() / mask.sum()


# ---------------------------------------------------------------- hand-computed values


def test_forward_kl_unclipped_hand_value_and_gradient():
    out, grad = _one_position("forward_kl", tau=None)
    # KL(p || q) = 0.5 ln(0.5/0.25) + 0.25 ln(0.25/0.5) + 0 = 0.25 ln 2; gradient q - p.
    assert out.loss.item() == pytest.approx(0.25 * LN2, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor([-0.25, 0.25, 0.0], dtype=torch.float64))


def test_forward_kl_clip_binds_value_and_gradient():
    out, grad = _one_position("forward_kl", tau=0.05)
    # Pointwise terms: 0.5 ln 2 = 0.347 (clipped to 0.05), 0.25 ln 0.5 = -0.173, 0.
    assert out.loss.item() == pytest.approx(0.05 - 0.25 * LN2, abs=1e-12)
    # The clipped entry drops out of the gradient: dL/dz_j = -c_j p_j + q_j sum_v c_v p_v with c=(0,1,1).
    expected = torch.tensor([0.25 * 0.5, -0.25 + 0.5 * 0.5, -0.25 + 0.25 * 0.5], dtype=torch.float64)
    torch.testing.assert_close(grad, expected)
    # An infinite tau is the same as no clip.
    assert _one_position("forward_kl", tau=math.inf)[0].loss.item() == pytest.approx(0.25 * LN2, abs=1e-12)


def test_reverse_kl_hand_value():
    out, grad = _one_position("reverse_kl")
    # KL(q || p) = 0.25 ln(0.25/0.5) + 0.5 ln(0.5/0.25) = 0.25 ln 2.
    assert out.loss.item() == pytest.approx(0.25 * LN2, abs=1e-12)
    # Gradient q_j (log q_j - log p_j - KL).
    log_ratio = torch.tensor([-LN2, LN2, 0.0], dtype=torch.float64)
    expected = torch.tensor(Q_STUDENT, dtype=torch.float64) * (log_ratio - 0.25 * LN2)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("beta", [0.5, 0.2])
def test_jsd_hand_value(beta):
    out, _ = _one_position("jsd", beta=beta)
    m = [beta * p + (1 - beta) * q for p, q in zip(P_TEACHER, Q_STUDENT)]
    kl_pm = sum(p * math.log(p / mi) for p, mi in zip(P_TEACHER, m))
    kl_qm = sum(q * math.log(q / mi) for q, mi in zip(Q_STUDENT, m))
    assert out.loss.item() == pytest.approx(beta * kl_pm + (1 - beta) * kl_qm, abs=1e-12)


def test_sampled_token_hand_value_and_gradient():
    student = _logits(Q_STUDENT).requires_grad_(True)
    tokens = torch.tensor([[1]])
    out = distillation_loss(student, _logits(P_TEACHER), torch.ones(1, 1), kind="sampled_token", sampled_tokens=tokens)
    out.loss.backward()
    # Advantage log p_T(y) - log p_S(y) = ln(0.25/0.5) = -ln 2; loss = -A log p_S(y) = ln2 * ln 0.5.
    assert out.loss.item() == pytest.approx(-(LN2**2), abs=1e-12)
    # Gradient -A (onehot(y) - q): the teacher likes y less, so the step lowers log p_S(y).
    expected = LN2 * torch.tensor([-0.25, 0.5, -0.25], dtype=torch.float64)
    torch.testing.assert_close(student.grad.reshape(-1), expected)


def test_jsd_endpoints_are_the_kls_and_interior_is_discontinuous():
    student, teacher, _, _ = _random_case(0)
    torch.testing.assert_close(generalized_jsd(student, teacher, 0.0), forward_kl_clipped(student, teacher, None))
    torch.testing.assert_close(generalized_jsd(student, teacher, 1.0), reverse_kl(student, teacher))
    # TRL convention: the interior tends to 0 at both ends (JSD_beta ~ beta KL), hence the jump.
    eps = 1e-6
    near_zero = generalized_jsd(student, teacher, eps)
    near_one = generalized_jsd(student, teacher, 1 - eps)
    torch.testing.assert_close(near_zero / eps, forward_kl_clipped(student, teacher, None), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(near_one / eps, reverse_kl(student, teacher), rtol=1e-3, atol=1e-6)


def test_jsd_matches_trl_reference_implementation():
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    student, teacher, mask, _ = _random_case(1, dtype=torch.float32)
    labels = torch.where(mask, 0, -100)
    for beta in (0.0, 0.3, 1.0):
        ours = distillation_loss(student, teacher, mask, kind="jsd", beta=beta).loss
        trl = gkd.GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta)
        # TRL's "batchmean" divides the sum over valid tokens by their number, as we do.
        assert ours.item() == pytest.approx(trl.item(), rel=1e-5)


# ---------------------------------------------------------------- chunking, masking, dtypes


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("chunk_size", [1, 3, 5, 256])
def test_chunked_equals_unchunked_values_and_gradients(kind, chunk_size):
    student, teacher, mask, tokens = _random_case(2)
    student.requires_grad_(True)
    out = distillation_loss(student, teacher, mask, kind=kind, tau=0.1, sampled_tokens=tokens, chunk_size=chunk_size)
    out.loss.backward()
    chunked_grad = student.grad.clone()
    student.grad = None
    reference = _reference(kind, student, teacher, mask, tokens, tau=0.1)
    reference.backward()
    torch.testing.assert_close(out.loss, reference.detach())
    torch.testing.assert_close(chunked_grad, student.grad)
    per_position = LossConfig(kind=kind, tau=0.1).per_position_fn()(student, teacher, tokens).detach()
    torch.testing.assert_close(out.per_token, torch.where(mask, per_position, 0.0))


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("temperature", [0.5, 1.1, 2.0])
def test_temperature_divides_both_logits_before_the_divergence(kind, temperature):
    """loss(s, t; T) == loss(s / T, t / T) in value and in the gradient w.r.t. the raw student logits."""
    student, teacher, mask, tokens = _random_case(5)
    student.requires_grad_(True)
    out = distillation_loss(student, teacher, mask, kind=kind, tau=0.1, sampled_tokens=tokens, chunk_size=4,
                            temperature=temperature)
    out.loss.backward()
    scaled_grad = student.grad.clone()
    student.grad = None
    reference = _reference(kind, student / temperature, teacher / temperature, mask, tokens, tau=0.1)
    reference.backward()
    torch.testing.assert_close(out.loss, reference.detach())
    torch.testing.assert_close(scaled_grad, student.grad)
    unscaled = distillation_loss(student.detach(), teacher, mask, kind=kind, tau=0.1, sampled_tokens=tokens)
    assert not torch.allclose(unscaled.loss, out.loss.detach())  # the temperature changes the loss


def test_temperature_is_validated_and_defaults_to_the_rollout_temperature():
    from distill_backend.config import BackendConfig

    with pytest.raises(ConfigError, match="loss_temperature"):
        LossConfig(temperature=0.0)
    assert BackendConfig(rollout_temperature=1.1).loss_config.temperature == 1.1
    assert BackendConfig(rollout_temperature=1.1, loss_temperature=1.0).loss_config.temperature == 1.0


def test_invalid_positions_contribute_nothing_and_mean_is_pooled():
    student, teacher, _, _ = _random_case(3, batch=2, length=5)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    student.requires_grad_(True)
    out = distillation_loss(student, teacher, mask, kind="reverse_kl", chunk_size=2)
    out.loss.backward()
    per_position = reverse_kl(student, teacher).detach()
    # Pooled: (4 tokens of row 0 + 1 token of row 1) / 5, not the mean of the two row means.
    pooled = (per_position[0, :4].sum() + per_position[1, 0]) / 5
    row_means = (per_position[0, :4].mean() + per_position[1, 0]) / 2
    assert out.loss.item() == pytest.approx(pooled.item(), rel=1e-12)
    assert abs(pooled.item() - row_means.item()) > 1e-3
    assert torch.all(student.grad[~mask] == 0) and torch.all(out.per_token[~mask] == 0)
    # Changing the logits at invalid positions changes nothing.
    scrambled = student.detach().clone()
    scrambled[~mask] = torch.randn_like(scrambled[~mask]) * 10
    again = distillation_loss(scrambled, teacher, mask, kind="reverse_kl")
    assert again.loss.item() == pytest.approx(out.loss.item(), rel=1e-12)
    assert again.mismatch.item() == out.mismatch.item()


def test_no_valid_tokens_gives_zero_loss_and_zero_gradient():
    student, teacher, _, _ = _random_case(4)
    student.requires_grad_(True)
    out = distillation_loss(student, teacher, torch.zeros(student.shape[:2], dtype=torch.bool))
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.mismatch.item() == 0.0
    assert torch.all(student.grad == 0)


def test_bf16_logits_are_computed_in_fp32():
    student, teacher, mask, _ = _random_case(5, vocab=50, dtype=torch.float32)
    student_bf16 = student.to(torch.bfloat16).requires_grad_(True)
    teacher_bf16 = teacher.to(torch.bfloat16)
    out = distillation_loss(student_bf16, teacher_bf16, mask, kind="forward_kl", chunk_size=4)
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and out.per_token.dtype == torch.float32
    assert student_bf16.grad.dtype == torch.bfloat16
    # Same as computing in fp32 on the (exactly representable) bf16 values ...
    student_fp32 = student_bf16.detach().float().requires_grad_(True)
    reference = _reference("forward_kl", student_fp32, teacher_bf16.float(), mask, None)
    reference.backward()
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-7)
    torch.testing.assert_close(student_bf16.grad.float(), student_fp32.grad, rtol=1e-2, atol=1e-4)
    # ... and not what arithmetic in bf16 would give.
    log_q = torch.log_softmax(student_bf16.detach(), -1)
    log_p = torch.log_softmax(teacher_bf16, -1)
    in_bf16 = (log_p.exp() * (log_p - log_q)).clamp(max=0.05).sum(-1)[mask].float().mean()
    assert abs(in_bf16.item() - reference.item()) > abs(out.loss.item() - reference.item())


def test_non_contiguous_logits_slice():
    student, teacher, mask, _ = _random_case(6, length=9)
    sliced_student = student[:, 1:-1].requires_grad_(False)
    base = student.clone().requires_grad_(True)
    out = distillation_loss(base[:, 1:-1], teacher[:, 1:-1], mask[:, 1:-1], chunk_size=4)
    out.loss.backward()
    reference = _reference("forward_kl", sliced_student, teacher[:, 1:-1], mask[:, 1:-1], None)
    torch.testing.assert_close(out.loss, reference)
    assert torch.all(base.grad[:, 0] == 0) and torch.all(base.grad[:, -1] == 0)


# ---------------------------------------------------------------- gradients


def test_gradient_flows_to_student_only():
    student, teacher, mask, _ = _random_case(7)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    for kind in ("forward_kl", "jsd"):
        out = distillation_loss(student, teacher, mask, kind=kind)
        out.loss.backward()
        assert teacher.grad is None
        assert student.grad is not None and student.grad.abs().sum() > 0
        assert not out.per_token.requires_grad and not out.mismatch.requires_grad
        assert not out.student_confidence.requires_grad


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_gradcheck_custom_function(kind):
    student, teacher, mask, _ = _random_case(8, batch=2, length=3, vocab=4)
    student.requires_grad_(True)

    def loss(logits):
        return distillation_loss(logits, teacher, mask, kind=kind, tau=0.3, beta=0.3, chunk_size=2).loss

    assert torch.autograd.gradcheck(loss, (student,), eps=1e-6, atol=1e-6)


def test_sampled_token_gradient_is_the_stop_gradient_form():
    # gradcheck does not apply (the advantage is detached on purpose); compare to autograd instead.
    student, teacher, mask, tokens = _random_case(9)
    student.requires_grad_(True)
    out = distillation_loss(student, teacher, mask, kind="sampled_token", sampled_tokens=tokens, chunk_size=3)
    (grad,) = torch.autograd.grad(out.loss, student)
    per_position = sampled_token_loss(student, teacher, tokens)
    (reference,) = torch.autograd.grad(per_position[mask].sum() / mask.sum(), student)
    torch.testing.assert_close(grad, reference)


def test_second_backward_through_retained_graph_recomputes_the_same_gradient():
    student, teacher, mask, _ = _random_case(10)
    student.requires_grad_(True)
    out = distillation_loss(student, teacher, mask, chunk_size=4)
    (first,) = torch.autograd.grad(3.0 * out.loss, student, retain_graph=True)
    (second,) = torch.autograd.grad(out.loss, student)
    torch.testing.assert_close(first, 3.0 * second)


def test_no_grad_mode_returns_the_same_numbers():
    student, teacher, mask, _ = _random_case(11)
    with torch.no_grad():
        eval_out = distillation_loss(student.clone().requires_grad_(True), teacher, mask)
    train_out = distillation_loss(student.clone().requires_grad_(True), teacher, mask)
    assert not eval_out.loss.requires_grad and train_out.loss.requires_grad
    torch.testing.assert_close(eval_out.loss, train_out.loss.detach())


# ---------------------------------------------------------------- statistics


def test_mismatch_and_confidence_on_a_constructed_example():
    # Three valid positions; the student's argmax differs from the teacher's at exactly one.
    student = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [9.0, 0.0, 0.0]]])
    teacher = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 2.0], [0.0, 9.0, 0.0]]])
    mask = torch.tensor([[True, True, True, False]])  # the 4th (a mismatch) is padding
    out = distillation_loss(student.requires_grad_(True), teacher, mask)
    assert out.mismatch.item() == pytest.approx(1 / 3)
    max_probs = torch.softmax(student.detach()[0, :3], -1).amax(-1)
    assert out.student_confidence.item() == pytest.approx(max_probs.mean().item(), rel=1e-6)


# ---------------------------------------------------------------- bad inputs


def test_unknown_kind_is_a_config_error_naming_field_allowed_and_value():
    student, teacher, mask, _ = _random_case(12)
    with pytest.raises(ConfigError) as info:
        distillation_loss(student, teacher, mask, kind="kl_forward")
    message = str(info.value)
    assert "loss" in message and "'kl_forward'" in message
    assert all(kind in message for kind in LOSS_KINDS)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"tau": 0.0}, "tau"), ({"tau": -1.0}, "tau"), ({"beta": 1.5}, "beta"), ({"chunk_size": 0}, "chunk_size")],
)
def test_bad_config_values(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        LossConfig(**kwargs)


def test_shapes_are_checked():
    student, teacher, mask, tokens = _random_case(13)
    eye = Head(torch.eye(student.shape[-1], dtype=student.dtype))
    with pytest.raises(ValueError, match="teacher_hidden"):
        fused_loss(student, teacher[:, :-1], eye, eye, tokens, mask, LossConfig())
    with pytest.raises(ValueError, match="distill_mask"):
        fused_loss(student, teacher, eye, eye, tokens, mask[:, :-1], LossConfig())
    with pytest.raises(ValueError, match="teacher_hidden"):
        fused_loss(student, None, eye, None, tokens, mask, LossConfig())


def test_loss_config_is_frozen():
    with pytest.raises(AttributeError):
        LossConfig().kind = "jsd"  # type: ignore[misc]


def test_tile_caps_rows_times_vocab():
    config = LossConfig(chunk_size=256, chunk_elements=2**22)
    assert config.tile(1000, 100) == (256, 100)  # tiny vocabulary: one tile, the row cap binds
    assert config.tile(1000, 151_936) == (256, 2**22 // 256)  # Qwen3: ten vocabulary tiles
    assert config.tile(3, 151_936) == (3, 151_936)  # few rows: the whole vocabulary in one tile
    assert LossConfig(chunk_size=4, chunk_elements=2).tile(10, 1000) == (4, 1)  # never an empty tile
    with pytest.raises(ConfigError, match="chunk_elements"):
        LossConfig(chunk_elements=0)
    # The tiling changes the order of the arithmetic, never the result.
    student, teacher, mask, _ = _random_case(15)
    tiled = distillation_loss(student, teacher, mask, chunk_size=2, chunk_elements=2 * 3)
    assert tiled.loss.item() == pytest.approx(distillation_loss(student, teacher, mask).loss.item(), rel=1e-12)
