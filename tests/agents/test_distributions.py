import numpy as np
import pytest
import torch
from scipy import stats

from agents.distributions import ACTION_EPS, BetaDistribution, concentrations, sample_beta


def _dist(raw_values):
    raw = torch.tensor(raw_values, dtype=torch.float64)
    return BetaDistribution(action_dim=1).proba_distribution(raw), concentrations(raw)


@pytest.mark.parametrize("raw", [[0.0, 0.0], [2.0, -1.0], [-1.5, 3.0]])
def test_sample_mean_matches_analytic_mean_and_stays_in_bounds(raw):
    dist, (a, b) = _dist([raw] * 20_000)
    samples = dist.sample(torch.Generator().manual_seed(0))
    assert samples.shape == (20_000, 1)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    a0, b0 = float(a[0]), float(b[0])
    mean, var = a0 / (a0 + b0), a0 * b0 / ((a0 + b0) ** 2 * (a0 + b0 + 1))
    # 5 standard errors of the sample mean
    assert abs(float(samples.mean()) - mean) < 5 * np.sqrt(var / 20_000)
    assert abs(float(samples.var()) - var) < 0.1 * var
    assert torch.allclose(dist.mean()[0], torch.tensor([mean], dtype=torch.float64))


def test_concentrations_are_above_one():
    a, b = concentrations(torch.tensor([[-50.0, 50.0]]))
    assert float(a) >= 1.0 and float(b) > 50.0


def test_log_prob_and_entropy_match_scipy():
    raw = torch.tensor([[0.3, 1.2], [2.0, -0.5], [-1.0, -1.0]], dtype=torch.float64)
    dist = BetaDistribution(1).proba_distribution(raw)
    a, b = (t.numpy().ravel() for t in concentrations(raw))
    actions = torch.tensor([[0.2], [0.9], [0.5]], dtype=torch.float64)
    expected = stats.beta.logpdf(actions.numpy().ravel(), a, b)
    np.testing.assert_allclose(dist.log_prob(actions).numpy(), expected, rtol=1e-8)
    np.testing.assert_allclose(dist.entropy().numpy(), stats.beta.entropy(a, b), rtol=1e-8)


def test_log_prob_is_finite_at_the_bounds():
    dist = BetaDistribution(1).proba_distribution(torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
    values = dist.log_prob(torch.tensor([[0.0], [1.0]]))
    assert torch.isfinite(values).all()
    clamped = dist.log_prob(torch.tensor([[ACTION_EPS], [1 - ACTION_EPS]]))
    assert torch.allclose(values, clamped)


def test_mode_is_the_argmax_of_the_density():
    raw = torch.tensor([[1.0, -0.3]], dtype=torch.float64)
    dist = BetaDistribution(1).proba_distribution(raw)
    grid = torch.linspace(0.001, 0.999, 9999, dtype=torch.float64)[:, None]
    density = BetaDistribution(1).proba_distribution(raw.expand(len(grid), 2)).log_prob(grid)
    assert abs(float(dist.mode()) - float(grid[density.argmax()])) < 1e-3
    assert torch.equal(dist.get_actions(deterministic=True), dist.mode())


def test_params_helpers_and_generator_reproducibility():
    dist = BetaDistribution(2)
    net = dist.proba_distribution_net(latent_dim=5)
    raw = net(torch.zeros(3, 5))
    assert raw.shape == (3, 4)
    actions, log_prob = dist.log_prob_from_params(raw)
    assert actions.shape == (3, 2) and log_prob.shape == (3,)
    a, b = torch.full((4,), 2.0), torch.full((4,), 3.0)
    first = sample_beta(a, b, torch.Generator().manual_seed(7))
    second = sample_beta(a, b, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
