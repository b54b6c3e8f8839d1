import math

from pyapp import vectors


def test_dot_and_normalize():
    assert vectors.dot([1, 2, 3], [4, 5, 6]) == 32
    n = vectors.normalize([3.0, 4.0])
    assert n == [0.6, 0.8]
    assert vectors.normalize([0.0, 0.0]) == [0.0, 0.0]


def test_dot_is_the_exactly_rounded_sum_of_the_products_and_checks_lengths():
    import random

    import pytest

    rng = random.Random(3)
    for _ in range(200):
        a = [rng.gauss(0, 1) for _ in range(384)]
        b = [rng.gauss(0, 1) for _ in range(384)]
        assert vectors.dot(a, b) == math.fsum(x * y for x, y in zip(a, b))
    # Cancellation a plain left-to-right sum gets wrong.
    assert vectors.dot([1e16, 1.0, -1e16], [1.0, 1.0, 1.0]) == 1.0
    with pytest.raises(ValueError):
        vectors.dot([1.0, 2.0], [1.0])


def test_mean():
    assert vectors.mean([[1.0, 2.0], [3.0, 6.0]]) == [2.0, 4.0]


def test_softmax_is_stable_and_sums_to_one():
    p = vectors.softmax([1000.0, 1000.0, 0.0])
    assert math.isclose(p[0], 0.5) and math.isclose(sum(p), 1.0)


def test_log_softmax_matches_log_of_softmax():
    logits = [0.3, -1.2, 2.0]
    for i in range(3):
        assert math.isclose(vectors.log_softmax_at(logits, i), math.log(vectors.softmax(logits)[i]))
