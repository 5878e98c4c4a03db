"""Growth fits recover known exponents and coefficients."""

import math

import pytest

from attncli.profile.fit import fit_growth

TS = [128, 256, 512, 1024, 2048]


@pytest.mark.parametrize("k", [1.0, 1.5, 2.0])
def test_exponent_of_a_power_law(k):
    fit = fit_growth(TS, [3e-4 * t**k for t in TS])
    assert fit.exponent == pytest.approx(k, abs=1e-9) and fit.r2_loglog == pytest.approx(1.0)


def test_quadratic_coefficients():
    fit = fit_growth(TS, [2e-7 * t * t + 3e-4 * t + 0.05 for t in TS])
    assert (fit.a, fit.b, fit.c) == pytest.approx((2e-7, 3e-4, 0.05), rel=1e-6)
    assert 1.0 < fit.exponent < 2.0  # a mix: between linear and quadratic


def test_noisy_data_still_close():
    import random

    rng = random.Random(0)
    ys = [5e-6 * t**2 * (1 + rng.uniform(-0.03, 0.03)) for t in TS]
    assert fit_growth(TS, ys).exponent == pytest.approx(2.0, abs=0.05)


def test_too_few_points_and_bad_values():
    assert fit_growth([128], [1.0]).exponent is None
    two = fit_growth([128, 256], [1.0, 4.0])
    assert two.exponent == pytest.approx(2.0) and two.a is None
    assert fit_growth([128, 256, 512], [None, float("nan"), 0.0]).points == 0
    assert fit_growth([128, 256, 512, 1024], [1, 4, 16, math.inf]).points == 3
