"""Shared fixtures: seeded data, and a network's parameters as tests/reference.py takes them."""

import numpy as np
import pytest


@pytest.fixture
def make_data():
    """make_data(num_records, num_features, num_outputs, loss, dtype="float64", seed=0) -> (X, Y).

    X is standard normal; Y holds 0/1 labels for 'bce', one-hot rows for
    'cce' and standard normal targets for 'mse'. Both C-contiguous of `dtype`, as chainrule requires.
    """

    def make(num_records, num_features, num_outputs, loss, dtype="float64", seed=0):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((num_records, num_features))
        if loss == "bce":
            Y = (rng.random((num_records, num_outputs)) < 0.5).astype(np.float64)
        elif loss == "cce":
            Y = np.eye(num_outputs)[rng.integers(0, num_outputs, num_records)]
        else:
            Y = rng.standard_normal((num_records, num_outputs))
        return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype)

    return make


@pytest.fixture
def copy_params():
    """copy_params(net) -> [(W_1, b_1), ..., (W_L, b_L)]: copies, W_l of shape (n_l, n_{l-1})."""

    def copy(net):
        return [(w.copy(), b.copy()) for w, b in zip(net.weights, net.biases)]

    return copy


@pytest.fixture
def at_each_thread_count():
    """at_each_thread_count(run, counts=(1, 2, 3, 4)) -> [run() at each count]; restores the setting after."""
    import chainrule as cr

    def call(run, counts=(1, 2, 3, 4)):
        original = cr.get_num_threads()
        try:
            results = []
            for threads in counts:
                cr.set_num_threads(threads)
                results.append(run())
            return results
        finally:
            cr.set_num_threads(original)

    return call


@pytest.fixture
def in_threads():
    """in_threads(body, count): body(i) on a thread of its own for each i < count, all started, then all joined."""
    import threading

    def run(body, count):
        threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run
