"""The estimator workloads (W6): chainrule.sklearn's MLPRegressor and scikit-learn's, as their users call them.

chainrule.bench.measure calls these for a workload whose `estimator` is set,
in place of the peers' four-method adapters: the estimators train with Adam
(scikit-learn's default solver), not the plain SGD of the other workloads.

- check: float64, records in order (shuffle=False), both estimators fitted
  from the same random_state, so they start from the same initial weights
  (chainrule's MLPRegressor draws them as scikit-learn's does) and must take
  the same Adam steps. scikit-learn's estimator is the reference.
- time_training: `fit` with max_iter=N and tol=0 (so it never stops early),
  the best of a few fits, divided by N: seconds per epoch of a whole fit,
  its input checks and set-up included. Shuffled, as by default.
- python_layer (chainrule only): a fit of `fit_epochs` epochs through the
  estimator against chainrule.Network.fit taking the same steps (the same
  initial weights, the same shuffling seed, chainrule.optim.Adam in
  scikit-learn's form, the same penalty); their parameters must end equal.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .workloads import make_data

IMPLEMENTATIONS = ("chainrule", "sklearn")
NEVER = 2**31 - 1   # n_iter_no_change: the fit runs all max_iter epochs
FIT_EPOCHS = 200    # the fit the Python layer's share is measured on (scikit-learn's default max_iter)


def _estimator_class(impl: str):
    if impl == "chainrule":
        from chainrule.sklearn import MLPRegressor
    else:
        from sklearn.neural_network import MLPRegressor
    return MLPRegressor


def settings(workload, epochs: int, shuffle: bool = True, batch_size="auto") -> dict:
    """scikit-learn's defaults (Adam, relu, alpha 1e-4, lr 1e-3, batches of 200) but exactly `epochs` epochs."""
    return dict(hidden_layer_sizes=workload.layer_sizes[1:-1], activation=workload.hidden,
                learning_rate_init=workload.lr, batch_size=batch_size, max_iter=epochs, shuffle=shuffle,
                random_state=0, tol=0.0, n_iter_no_change=NEVER)


def _fit(estimator, X, y) -> float:
    """Seconds of estimator.fit(X, y); the ConvergenceWarning that max_iter without tol gives is expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached, as asked
        start = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - start


def not_applicable(impl: str, workload) -> dict:
    return {"ok": False, "status": "not applicable",
            "error": f"{workload.name} runs through scikit-learn's MLPRegressor: chainrule's and scikit-learn's only"}


def check(impl: str, workload, arrays: dict) -> dict:
    """Losses, final parameters and predictions of a short in-order fit, float64, into arrays."""
    name = workload.name
    if impl not in IMPLEMENTATIONS:
        return not_applicable(impl, workload)
    try:
        Estimator = _estimator_class(impl)
    except ImportError as error:
        return {"ok": False, "status": "needs scikit-learn", "error": f"{error}"}
    X, Y = make_data(workload, workload.check_records, np.float64)
    estimator = Estimator(**settings(workload, workload.check_epochs, shuffle=False,
                                     batch_size=workload.check_batch_size))
    _fit(estimator, X, Y[:, 0])
    arrays[f"{name}/costs"] = np.asarray(estimator.loss_curve_)
    arrays[f"{name}/predict"] = np.asarray(estimator.predict(X)).reshape(len(X), -1)
    for layer, (coef, intercept) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
        arrays[f"{name}/W{layer + 1}"], arrays[f"{name}/b{layer + 1}"] = np.asarray(coef).T, intercept
    return {"ok": True}


def train(impl: str, workload, dtype, seconds: float, fit_epochs: int) -> dict:
    """What measure.py's train task reports for an estimator workload: the timing, and for chainrule in
    float64 (the workload's dtype) the Python layer's share of a `fit_epochs`-epoch fit."""
    result = time_training(impl, workload, dtype, seconds)
    if impl == "chainrule" and dtype == np.float64:
        result["python_layer"] = python_layer(workload, dtype, fit_epochs)
    return result


def time_training(impl: str, workload, dtype, seconds: float, repeats: int = 3) -> dict:
    """Records/s of whole fits of N epochs over the workload's records, the best of up to `repeats`.

    A one-epoch fit first (untimed: lazy initialisation) sizes N so a fit lasts
    about seconds / repeats, at least 2 epochs.
    """
    Estimator = _estimator_class(impl)
    X, Y = make_data(workload, workload.num_records, dtype)
    y = Y[:, 0]
    warmup = _fit(Estimator(**settings(workload, 1)), X, y)
    epochs = max(2, round(seconds / repeats / warmup))
    timings = []
    while len(timings) < repeats and sum(timings) < seconds:
        estimator = Estimator(**settings(workload, epochs))
        timings.append(_fit(estimator, X, y))
        if estimator.n_iter_ != epochs:
            raise RuntimeError(f"the fit ran {estimator.n_iter_} epochs, not max_iter={epochs}")
    params = list(estimator.coefs_) + list(estimator.intercepts_)
    return {"records": len(X), "epochs": epochs, "seconds": timings,
            "estimated_samples_per_s": len(X) / warmup, "samples_per_s": len(X) * epochs / min(timings),
            "seconds_per_epoch": min(timings) / epochs, "final_cost": float(estimator.loss_),
            "finite": all(np.isfinite(p).all() for p in params) and bool(np.isfinite(estimator.loss_))}


def _core_fit(workload, X, Y, epochs: int):
    """chainrule.Network.fit taking the steps chainrule's MLPRegressor(random_state=0) takes; (seconds, network).

    The estimator's steps (chainrule.sklearn): initial weights drawn from
    RandomState(0) as scikit-learn draws them, then one seed for the shuffling;
    Adam in scikit-learn's form; scikit-learn's squared loss is half of
    chainrule's MSE (docs/math.md), so alpha and eps are doubled.
    """
    import chainrule
    from chainrule.sklearn import _SEED_BOUND

    random_state = np.random.RandomState(0)
    network = chainrule.Network(list(workload.layer_sizes), activation=workload.hidden, output=workload.output,
                                loss=workload.loss, dtype=X.dtype, seed=0)
    for layer, (n_in, n_out) in enumerate(zip(workload.layer_sizes[:-1], workload.layer_sizes[1:])):
        bound = np.sqrt(6.0 / (n_in + n_out))
        network.weights[layer][...] = random_state.uniform(-bound, bound, (n_in, n_out)).T
        network.biases[layer][...] = random_state.uniform(-bound, bound, n_out)
    seed = int(random_state.randint(0, _SEED_BOUND, dtype=np.int64))
    scale = 0.5  # scikit-learn's squared-error gradient over chainrule's
    optimizer = chainrule.optim.Adam(lr=workload.lr, betas=(0.9, 0.999), eps=1e-8 / scale, form="sklearn")
    start = time.perf_counter()
    network.fit(X, Y, epochs=epochs, batch_size=workload.batch_size, shuffle=True, seed=seed,
                optimizer=optimizer, alpha=1e-4 / scale)
    return time.perf_counter() - start, network


def python_layer(workload, dtype, epochs: int, repeats: int = 2) -> dict:
    """Seconds of an `epochs`-epoch fit through chainrule's MLPRegressor and through Network.fit, best of
    `repeats` each, alternated; the estimator's extra time in percent; and whether both ended equal."""
    Estimator = _estimator_class("chainrule")
    X, Y = make_data(workload, workload.num_records, dtype)
    y = Y[:, 0]
    best = {"estimator": np.inf, "core": np.inf}
    for _ in range(repeats):
        estimator = Estimator(**settings(workload, epochs))
        best["estimator"] = min(best["estimator"], _fit(estimator, X, y))
        seconds, network = _core_fit(workload, X, Y, epochs)
        best["core"] = min(best["core"], seconds)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(estimator.network_.weights + estimator.network_.biases,
                                                                network.weights + network.biases))
    return {"epochs": epochs, "estimator_seconds": best["estimator"], "core_seconds": best["core"],
            "overhead_pct": 100 * (best["estimator"] / best["core"] - 1), "max_abs_param_diff": difference}
