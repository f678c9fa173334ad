"""Dropout on hidden layers (docs/math.md, "Dropout"): the mask, its gradient, and its determinism.

The mask of a training step is a hash of (seed, epoch, step, record, layer,
unit); this file computes it again in Python from that definition, so that
the step chainrule takes can be checked against central differences of the
cost with the same mask fixed.
"""

import numpy as np
import pytest

import chainrule as cr
import reference

MASK64 = (1 << 64) - 1


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def draw(seed, epoch, step, record, layer, unit):
    h = mix64((seed + 0x9E3779B97F4A7C15) & MASK64)
    for key in (epoch, step, record, (layer << 32) | unit):
        h = mix64(h ^ key)
    return (h >> 11) * 2.0 ** -53


def keep_mask(seed, epoch, step, first_record, rows, layer, units, rate):
    return np.array([[draw(seed, epoch, step, first_record + r, layer, j) >= rate for j in range(units)]
                     for r in range(rows)])


def cost_with_masks(params, activations, X, Y, masks, rates):
    """The bce cost of docs/math.md with each hidden output multiplied by its mask / (1 - rate)."""
    A = X
    for l, ((W, b), name) in enumerate(zip(params, activations)):
        Z = A @ W.T + b
        A = reference.ACTIVATIONS[name](Z)
        if l < len(params) - 1:
            A = A * masks[l] / (1.0 - rates[l])
    return float(np.mean(np.sum(np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z))), axis=1)))


def test_a_step_with_dropout_is_the_gradient_of_the_cost_with_its_masks(make_data, copy_params):
    sizes, rates, seed, lr = [5, 8, 7, 2], [0.3, 0.5], 1234, 1e-3
    net = cr.Network(sizes, activation=["tanh", "relu"], output="sigmoid", dtype="float64", seed=3)
    X, Y = make_data(12, 5, 2, "bce", seed=4)
    params = copy_params(net)
    masks = [keep_mask(seed, 0, 0, 0, len(X), l, sizes[l + 1], rates[l]) for l in range(2)]
    assert 0 < masks[1].mean() < 1  # some dropped, some kept
    # One full-batch plain SGD step, in order: the gradient is (W - W') / lr.
    net.fit(X, Y, epochs=1, lr=lr, batch_size=len(X), shuffle=False, seed=seed, dropout=rates)
    h = 1e-6
    for l, (W, b) in enumerate(params):
        step = (W - net.weights[l]) / lr
        for i, j in [(0, 0), (W.shape[0] - 1, W.shape[1] - 1), (1, 2)]:
            plus = [(w.copy(), c.copy()) for w, c in params]
            minus = [(w.copy(), c.copy()) for w, c in params]
            plus[l][0][i, j] += h
            minus[l][0][i, j] -= h
            numeric = (cost_with_masks(plus, net.activations, X, Y, masks, rates)
                       - cost_with_masks(minus, net.activations, X, Y, masks, rates)) / (2 * h)
            assert abs(step[i, j] - numeric) < 1e-6 * max(1.0, abs(numeric)), (l, i, j, step[i, j], numeric)


def test_dropout_drops_about_its_rate_and_predict_never_drops(make_data):
    net = cr.Network([20, 400, 1], activation="relu", seed=5)
    X, Y = make_data(200, 20, 1, "bce", seed=6)
    mask = keep_mask(77, 0, 0, 0, 50, 0, 400, 0.25)
    dropped = 1.0 - mask.mean()  # 20,000 draws: the rate within 4 standard deviations (0.012)
    assert abs(dropped - 0.25) < 0.012
    before = net.predict(X)
    again = net.predict(X)
    assert before.tobytes() == again.tobytes()
    net.fit(X, Y, epochs=1, seed=77, dropout=0.25)
    assert np.isfinite(net.cost(X, Y))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_gives_the_same_bits_at_any_thread_count(make_data, at_each_thread_count, dtype):
    X, Y = make_data(256, 300, 10, "bce", dtype=dtype, seed=7)
    start = cr.Network([300, 256, 64, 10], activation="relu", dtype=dtype, seed=8)

    def run():
        net = start.copy()
        history = net.fit(X, Y, epochs=2, batch_size=64, seed=9, dropout=[0.5, 0.2], optimizer=cr.optim.Adam(lr=1e-3))
        return [history, *net.weights, *net.biases]

    runs = at_each_thread_count(run)
    for other in runs[1:]:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(runs[0], other))


def test_a_run_with_dropout_resumes_exactly(make_data):
    X, Y = make_data(60, 6, 2, "bce", seed=10)
    start = cr.Network([6, 9, 5, 2], activation="tanh", seed=11)
    whole, split = start.copy(), start.copy()
    expected = whole.fit(X, Y, epochs=4, batch_size=8, seed=12, dropout=0.4, optimizer=cr.optim.SGD(lr=0.1))
    optimizer = cr.optim.SGD(lr=0.1)
    first = split.fit(X, Y, epochs=1, batch_size=8, seed=12, dropout=0.4, optimizer=optimizer)
    rest = split.fit(X, Y, epochs=3, batch_size=8, dropout=0.4, optimizer=optimizer)  # seed=None: the run's
    assert np.concatenate([first, rest]).tobytes() == expected.tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(split.weights, whole.weights))


def test_dropout_zero_is_no_dropout(make_data):
    X, Y = make_data(60, 6, 2, "bce", seed=13)
    a, b = cr.Network([6, 9, 2], seed=14), cr.Network([6, 9, 2], seed=14)
    assert a.fit(X, Y, epochs=2, seed=1, dropout=0.0).tobytes() == b.fit(X, Y, epochs=2, seed=1).tobytes()


@pytest.mark.parametrize("dropout, error", [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                            ([0.1, 0.2], ValueError), ("0.5", TypeError), ([0.5, "x"], TypeError)],
                         ids=["one", "negative", "nan", "too-many", "text", "text-in-list"])
def test_bad_dropout_is_refused_and_changes_nothing(make_data, dropout, error):
    X, Y = make_data(20, 6, 2, "bce", seed=15)
    net = cr.Network([6, 9, 2], seed=16)
    before = [w.copy() for w in net.weights]
    with pytest.raises(error, match="dropout"):
        net.fit(X, Y, epochs=1, dropout=dropout)
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, before))
