"""The benchmark's workloads (for the performance targets) and the seeded data and initial weights they train on.

Every implementation of a workload starts from the same initial parameters and
trains on the same records: both are made here from fixed seeds, in float64,
then rounded to the dtype of the run, so the float32 and float64 runs differ
only by that rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATA_SEED = 20240601
PARAMS_SEED = 7


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    layer_sizes: tuple      # (n_0, n_1, ..., n_L)
    hidden: str             # activation of every hidden layer
    output: str             # activation of the output layer
    loss: str               # 'bce' or 'mse' (docs/math.md)
    batch_size: int
    lr: float
    num_records: int        # the data set a timed run cycles over (whole epochs or a slice of it)
    warmup_records: int     # trained once, untimed, before the timed run (also sizes it)
    check_records: int      # the agreement check: a small slice, float64, records in order
    check_batch_size: int
    check_epochs: int
    # Trained through the scikit-learn estimators (chainrule.bench.estimators), Adam, as their users call
    # them; `lr` is then learning_rate_init. Only chainrule's and scikit-learn's estimators run it.
    estimator: bool = False

    @property
    def activations(self) -> tuple:
        """The activation of each layer, the output's last."""
        return (self.hidden,) * (len(self.layer_sizes) - 2) + (self.output,)

    @property
    def num_outputs(self) -> int:
        return self.layer_sizes[-1]

    def flops_per_record(self) -> int:
        """2 x the multiply-adds of the GEMMs of one record's training step (SGD or Adam).

        Per layer l (n_in -> n_out): the forward Z = A W^T, the backward dW = dZ^T A
        and, except for the first layer, dA = dZ W; n_in * n_out multiply-adds each.
        Elementwise work (bias, activation, update) is not counted.
        """
        flops = 0
        for layer, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            gemms = 2 if layer == 0 else 3
            flops += 2 * gemms * n_in * n_out
        return flops

    @property
    def num_params(self) -> int:
        return sum((n_in + 1) * n_out for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]))

    def bytes_per_step(self, itemsize: int) -> int:
        """The memory traffic a step cannot avoid if nothing stays in cache: the batch's records and
        targets read once, the parameters read and written once (the update)."""
        return itemsize * (self.batch_size * (self.layer_sizes[0] + self.layer_sizes[-1]) + 2 * self.num_params)


WORKLOADS = (
    Workload("W1", "logistic regression, 30 features, batch 1", (30, 1), "sigmoid", "sigmoid", "bce",
             batch_size=1, lr=0.05, num_records=8192, warmup_records=256,
             check_records=64, check_batch_size=1, check_epochs=3),
    Workload("W2", "30-16-1 sigmoid, BCE, batch 32", (30, 16, 1), "sigmoid", "sigmoid", "bce",
             batch_size=32, lr=0.5, num_records=16384, warmup_records=1024,
             check_records=256, check_batch_size=32, check_epochs=3),
    Workload("W3", "10-32-1 sigmoid hidden, identity out, MSE, batch 32", (10, 32, 1), "sigmoid", "identity",
             "mse", batch_size=32, lr=0.05, num_records=16384, warmup_records=1024,
             check_records=256, check_batch_size=32, check_epochs=3),
    Workload("W4", "784-256-256-10 sigmoid, BCE (multi-label), batch 64", (784, 256, 256, 10), "sigmoid",
             "sigmoid", "bce", batch_size=64, lr=0.02, num_records=4096, warmup_records=256,
             check_records=256, check_batch_size=64, check_epochs=3),
    # One W5 step is ~120 GFLOP: the warm-up is a single batch of 64 records, and
    # the agreement check uses a small batch (the math does not depend on its size).
    Workload("W5", "1024-4096-4096-16 sigmoid, BCE, batch 1024", (1024, 4096, 4096, 16), "sigmoid",
             "sigmoid", "bce", batch_size=1024, lr=0.002, num_records=3072, warmup_records=64,
             check_records=32, check_batch_size=16, check_epochs=2),
    # scikit-learn's default MLPRegressor (one hidden layer of 100 relu units, Adam, lr 1e-3, alpha 1e-4,
    # batches of 200) on 50 inputs, fitted whole epochs of 15,000 records at a time.
    Workload("W6", "scikit-learn's default MLPRegressor, 50-100-1 relu, Adam, batch 200, through the estimator",
             (50, 100, 1), "relu", "identity", "mse", batch_size=200, lr=1e-3, num_records=15000,
             warmup_records=15000, check_records=600, check_batch_size=200, check_epochs=3, estimator=True),
)

BY_NAME = {workload.name: workload for workload in WORKLOADS}


def make_data(workload: Workload, num_records: int, dtype) -> tuple:
    """Seeded records X (num_records, n_0) and targets Y (num_records, n_L), C-contiguous, of dtype.

    X is standard normal. The targets come from a random linear teacher t = X T^T:
    for BCE, multi-label 0/1 targets (t + noise > 0); for MSE, tanh(t) + noise.
    The first k records are the same whatever num_records is.
    """
    n_in, n_out = workload.layer_sizes[0], workload.layer_sizes[-1]
    rng = np.random.default_rng([DATA_SEED, n_in, n_out])
    teacher = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
    X = np.empty((num_records, n_in))
    Y = np.empty((num_records, n_out))
    chunk = 4096  # drawn in fixed chunks so a prefix does not depend on num_records
    for start in range(0, num_records, chunk):
        stop = min(start + chunk, num_records)
        x = rng.standard_normal((chunk, n_in))[: stop - start]
        noise = rng.standard_normal((chunk, n_out))[: stop - start]
        t = x @ teacher.T
        X[start:stop] = x
        Y[start:stop] = (t + 0.5 * noise > 0) if workload.loss == "bce" else np.tanh(t) + 0.1 * noise
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype)


def initial_params(workload: Workload, dtype) -> tuple:
    """(weights, biases): Glorot-uniform W_l (n_l, n_{l-1}) and small uniform b_l (n_l,), of dtype.

    The biases are not zero so that a bias handled wrongly shows in the first step.
    """
    rng = np.random.default_rng([PARAMS_SEED, *workload.layer_sizes])
    weights, biases = [], []
    for n_in, n_out in zip(workload.layer_sizes[:-1], workload.layer_sizes[1:]):
        limit = np.sqrt(6.0 / (n_in + n_out))
        weights.append(np.ascontiguousarray(rng.uniform(-limit, limit, (n_out, n_in)), dtype=dtype))
        biases.append(np.ascontiguousarray(rng.uniform(-0.1, 0.1, n_out), dtype=dtype))
    return weights, biases
