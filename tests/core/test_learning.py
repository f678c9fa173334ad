"""Training learns, and a seed makes it reproducible.

XOR (the classic problem no single layer solves), scikit-learn's bundled
breast-cancer (BCE) and diabetes (MSE) data sets, and bit-for-bit
reproducibility of initialisation and of shuffled training.
"""

import numpy as np
import pytest

import chainrule as cr

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def _learns_xor(seed, dtype="float64"):
    net = cr.Network([2, 4, 1], activation="sigmoid", output="sigmoid", loss="bce", dtype=dtype, seed=seed)
    X, Y = XOR_X.astype(dtype), XOR_Y.astype(dtype)
    # Full-batch steps with a large rate: XOR's four records are separable by
    # 2-4-1 but the plateau around a = 0.5 takes a few hundred steps to leave.
    costs = net.fit(X, Y, epochs=2000, lr=2.0, batch_size=4, shuffle=False)
    assert np.all(np.isfinite(costs))
    return bool(np.all((net.predict(X) > 0.5) == (Y > 0.5))), costs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_xor_with_a_fixed_seed(dtype):
    learned, costs = _learns_xor(seed=0, dtype=dtype)
    assert learned
    assert costs[-1] < 0.1 < np.log(2) - 0.01 < costs[0]  # from chance (log 2 per record) to near 0


def test_xor_learns_for_most_seeds():
    successes = sum(_learns_xor(seed)[0] for seed in range(20))
    assert successes >= 18, f"XOR learned for only {successes} of 20 seeds"


def _standardize(train, test):
    """Both by the training split's statistics (the test split stays unseen)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (train - mean) / std, (test - mean) / std


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_breast_cancer_classification(dtype):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42, stratify=y)
    X_train, X_test = _standardize(X_train, X_test)
    as_array = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731

    net = cr.Network([30, 16, 1], activation="tanh", output="sigmoid", loss="bce", dtype=dtype, seed=0)
    costs = net.fit(as_array(X_train), as_array(y_train), epochs=10, lr=0.05, batch_size=16, seed=0)
    assert costs[-1] < costs[0]
    predicted = net.predict(as_array(X_test))[:, 0] > 0.5
    accuracy = np.mean(predicted == (y_test == 1))
    assert accuracy >= 0.95, f"test accuracy {accuracy:.3f}"


def test_diabetes_regression():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42)
    X_train, X_test = _standardize(X_train, X_test)
    y_train, y_test = _standardize(y_train, y_test)  # the train mean predicts 0

    net = cr.Network([10, 16, 1], activation="tanh", output="identity", loss="mse", seed=0)
    net.fit(np.ascontiguousarray(X_train), np.ascontiguousarray(y_train), epochs=50, lr=0.01, batch_size=16, seed=0)
    test_mse = np.mean((net.predict(np.ascontiguousarray(X_test))[:, 0] - y_test) ** 2)
    mean_predictor_mse = np.mean(y_test ** 2)
    r_squared = 1.0 - test_mse / mean_predictor_mse
    assert r_squared > 0.3, f"test R^2 {r_squared:.3f} (MSE {test_mse:.3f} vs {mean_predictor_mse:.3f} for the mean)"


# -- reproducibility ----------------------------------------------------------


def _parameters(net):
    return [p.copy() for p in net.weights + net.biases]


def _same(params_a, params_b):
    return all(np.array_equal(a, b) for a, b in zip(params_a, params_b))


def _training_data(dtype):
    rng = np.random.default_rng(51)
    X = rng.standard_normal((37, 4))
    Y = (X[:, :2].sum(axis=1, keepdims=True) > 0).astype(np.float64)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype)


def _network(seed, dtype):
    return cr.Network([4, 6, 5, 1], activation=["relu", "tanh"], output="sigmoid", loss="bce", dtype=dtype,
                      seed=seed)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_seed_gives_identical_initial_weights(dtype):
    first, second = _network(9, dtype), _network(9, dtype)
    assert _same(_parameters(first), _parameters(second))
    assert all(np.any(w != 0) for w in first.weights)  # an initialisation, not zeros


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_different_seeds_give_different_initial_weights(dtype):
    first, second = _network(9, dtype), _network(10, dtype)
    for w_first, w_second in zip(first.weights, second.weights):
        assert not np.array_equal(w_first, w_second)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_seeds_give_identical_shuffled_training(dtype):
    X, Y = _training_data(dtype)
    first, second = _network(9, dtype), _network(9, dtype)
    history_first = first.fit(X, Y, epochs=4, lr=0.1, batch_size=5, shuffle=True, seed=3)
    history_second = second.fit(X, Y, epochs=4, lr=0.1, batch_size=5, shuffle=True, seed=3)
    assert np.array_equal(history_first, history_second)
    assert _same(_parameters(first), _parameters(second))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shuffle_seed_changes_the_visiting_order(dtype):
    """Same initial weights, different shuffle seeds: the batches differ, so
    the run does; with shuffle=False the shuffle seed does not matter."""
    X, Y = _training_data(dtype)
    first, second = _network(9, dtype), _network(9, dtype)
    history_first = first.fit(X, Y, epochs=4, lr=0.1, batch_size=5, shuffle=True, seed=3)
    history_second = second.fit(X, Y, epochs=4, lr=0.1, batch_size=5, shuffle=True, seed=4)
    assert not np.array_equal(history_first, history_second)
    assert not _same(_parameters(first), _parameters(second))

    in_order_first, in_order_second = _network(9, dtype), _network(9, dtype)
    history_first = in_order_first.fit(X, Y, epochs=4, lr=0.1, batch_size=5, shuffle=False, seed=3)
    history_second = in_order_second.fit(X, Y, epochs=4, lr=0.1, batch_size=5, shuffle=False, seed=4)
    assert np.array_equal(history_first, history_second)
    assert _same(_parameters(in_order_first), _parameters(in_order_second))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shuffled_epoch_visits_every_record_once(dtype):
    """A shuffled run is not the in-order run, yet each epoch still visits
    every record exactly once: with one record per batch and a learning rate
    too small to move the parameters, each epoch's cost is the full-data cost
    (a record seen twice and another skipped would shift it by ~1e-2)."""
    X, Y = _training_data(dtype)
    shuffled, in_order = _network(9, dtype), _network(9, dtype)
    history_shuffled = shuffled.fit(X, Y, epochs=3, lr=0.1, batch_size=5, shuffle=True, seed=3)
    history_in_order = in_order.fit(X, Y, epochs=3, lr=0.1, batch_size=5, shuffle=False)
    assert not np.array_equal(history_shuffled, history_in_order)

    frozen = _network(9, dtype)
    full_cost = frozen.cost(X, Y)
    history = frozen.fit(X, Y, epochs=3, lr=1e-12, batch_size=1, shuffle=True, seed=3)
    tolerance = 1e-9 if dtype == "float64" else 1e-5  # the same losses, summed in another order
    np.testing.assert_allclose(history, full_cost, rtol=tolerance)
