import numpy as np
import pytest

from hateful_memes.scoring import prior


def _calibrated(n, rate, rng):
    """Posteriors that are calibrated for a set with hateful prevalence `rate`."""
    y = rng.random(n) < rate
    # A score whose likelihood ratio is known: x ~ N(+1, 1) for hateful, N(-1, 1) otherwise.
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    odds = np.exp(2 * x) * rate / (1 - rate)
    return y, odds / (1 + odds), x


def test_rescale_to_the_same_prior_is_the_identity():
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(prior.rescale(p, 0.35, 0.35), p)


def test_rescaled_posteriors_are_calibrated_at_the_new_prior():
    rng = np.random.default_rng(0)
    _, p_train, x = _calibrated(200_000, 0.35, rng)
    # The same x at prevalence 0.1 has the posterior of Bayes' rule with that prior.
    odds = np.exp(2 * x) * 0.1 / 0.9
    np.testing.assert_allclose(prior.rescale(p_train, 0.35, 0.1), odds / (1 + odds), atol=1e-9)


def test_em_finds_the_prevalence_of_a_shifted_set():
    rng = np.random.default_rng(1)
    _, _, x = _calibrated(40_000, 0.12, rng)
    odds = np.exp(2 * x) * 0.35 / 0.65  # what a model trained at 35% says about them
    estimate = prior.estimate(odds / (1 + odds), 0.35)
    assert abs(estimate - 0.12) < 0.01


def test_adjust_moves_the_gate_and_keeps_the_conditional_scores():
    rng = np.random.default_rng(2)
    gate = rng.random(50)
    cond = rng.dirichlet(np.ones(5), 50)
    pc = np.column_stack([1 - gate, gate[:, None] * cond])
    out = prior.adjust({"pc": pc}, 0.35, 0.05)["pc"]
    assert (out[:, 1:] <= (1 - out[:, 0])[:, None] + 1e-6).all()
    assert (out[:, 0] >= pc[:, 0] - 1e-6).all()  # fewer hateful memes: more empty
    # P(label | some label) is the same at any prevalence: only P(some label) moves.
    some = 1 - out[:, 0]
    np.testing.assert_allclose(out[:, 1:] / some[:, None], cond, rtol=1e-4)
    assert (np.argsort(out[:, 0]) == np.argsort(pc[:, 0])).all()


@pytest.mark.parametrize("bad", [0, 1, -0.2, 1.5])
def test_a_prior_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match="prevalence"):
        prior.rescale(np.array([0.5]), 0.35, bad)
