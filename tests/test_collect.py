"""The error of a mean accuracy that study tables print beside it."""

import math

import pytest

from cvaezoo.collect import accuracy_error, mean_error


def test_accuracy_error_combines_the_seeds_spread_and_the_test_sets_binomial_error():
    # 0.4, 0.5, 0.6 on 200 examples: mean 0.5, variance 0.01 over 3 seeds, binomial 0.25 / 200
    assert accuracy_error([0.4, 0.5, 0.6], 200) == pytest.approx(math.sqrt(0.01 / 3 + 0.25 / 200))
    # one seed: the binomial error alone, the review's 0.035 at 0.4 on 200 images
    assert accuracy_error([0.4], 200) == pytest.approx(0.0346, abs=1e-4)
    assert accuracy_error([1.0, 1.0], 50) == 0.0
    assert mean_error([0.4, 0.5, 0.6], 200) == "0.500 ± 0.068" and mean_error([], 200) == "–"
    with pytest.raises(ValueError, match="n=0"):
        accuracy_error([0.5], 0)
