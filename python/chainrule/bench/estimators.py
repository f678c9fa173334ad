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

    python -m chainrule.bench.estimators --epochs 200 --rounds 4   # where a W6 epoch's time goes
    python -m chainrule.bench.estimators --profile 300             # the core's fit alone, to run under perf
    python -m chainrule.bench.estimators --python-layer --epochs 200 --rounds 8   # the Python layer, more rounds
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


# scikit-learn's squared-error gradient over chainrule's MSE gradient (docs/math.md): the estimator
# doubles alpha and Adam's eps to take scikit-learn's steps (chainrule.sklearn._make_optimizer).
LOSS_SCALE = 0.5
ALPHA, EPSILON = 1e-4, 1e-8  # scikit-learn's defaults


def _sklearn_adam(workload):
    """chainrule.optim.Adam as chainrule's MLPRegressor builds it from scikit-learn's defaults."""
    import chainrule

    return chainrule.optim.Adam(lr=workload.lr, betas=(0.9, 0.999), eps=EPSILON / LOSS_SCALE, form="sklearn")


def _core_fit(workload, X, Y, epochs: int):
    """chainrule.Network.fit taking the steps chainrule's MLPRegressor(random_state=0) takes; (seconds, network).

    The estimator's steps (chainrule.sklearn): initial weights drawn from
    RandomState(0) as scikit-learn draws them, then one seed for the
    shuffling; Adam in scikit-learn's form; alpha and eps over LOSS_SCALE.
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
    optimizer = _sklearn_adam(workload)
    start = time.perf_counter()
    network.fit(X, Y, epochs=epochs, batch_size=workload.batch_size, shuffle=True, seed=seed,
                optimizer=optimizer, alpha=ALPHA / LOSS_SCALE)
    return time.perf_counter() - start, network


def python_layer(workload, dtype, epochs: int, repeats: int = 3) -> dict:
    """Seconds of an `epochs`-epoch fit through chainrule's MLPRegressor and through Network.fit, best of
    `repeats` each, alternated; the estimator's extra time in percent; and how far apart their parameters
    ended (0: the same steps)."""
    Estimator = _estimator_class("chainrule")
    X, Y = make_data(workload, workload.num_records, dtype)
    y = Y[:, 0]
    best = {"estimator": np.inf, "core": np.inf}
    for repeat in range(repeats):
        # Each goes first in turn, so that neither always runs on the machine the other left.
        for which in ("estimator", "core") if repeat % 2 == 0 else ("core", "estimator"):
            if which == "estimator":
                estimator = Estimator(**settings(workload, epochs))
                best["estimator"] = min(best["estimator"], _fit(estimator, X, y))
            else:
                seconds, network = _core_fit(workload, X, Y, epochs)
                best["core"] = min(best["core"], seconds)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(estimator.network_.weights + estimator.network_.biases,
                                                                network.weights + network.biases))
    return {"epochs": epochs, "estimator_seconds": best["estimator"], "core_seconds": best["core"],
            "overhead_pct": 100 * (best["estimator"] / best["core"] - 1), "max_abs_param_diff": difference}


# -- where an epoch's time goes: python -m chainrule.bench.estimators --------------------------------------


def _per_epoch(steps: dict, epochs: int, rounds: int) -> dict:
    """{name: the best over `rounds` of steps[name](epochs)'s seconds / epochs}; one untimed call of each first,
    then the rounds one after another, each timing every step in turn (a slow spell of the machine then hits
    one round of each, not all the rounds of one)."""
    for function in steps.values():
        function(1)
    best = dict.fromkeys(steps, np.inf)
    for _ in range(rounds):
        for name, function in steps.items():
            start = time.perf_counter()
            function(epochs)
            best[name] = min(best[name], (time.perf_counter() - start) / epochs)
    return best


def _first_layer_flops(workload) -> int:
    """FLOP per record of the first layer's two GEMMs (forward and weight gradient)."""
    return 2 * 2 * workload.layer_sizes[0] * workload.layer_sizes[1]


def _big_gemms_alone(workload, X, epochs: int) -> None:
    """The first layer's two GEMMs, which hold 20,000 of W6's 20,600 FLOP per record, for `epochs` epochs, by
    NumPy's matmul into preallocated arrays: per batch Z1 = X W1^T and dW1 = dZ1^T X (docs/math.md)."""
    n_in, n_hidden = workload.layer_sizes[:2]
    W1 = np.random.default_rng(0).standard_normal((n_hidden, n_in)).astype(X.dtype)
    B = workload.batch_size
    Z1, dW1 = np.empty((B, n_hidden), X.dtype), np.empty_like(W1)
    for _ in range(epochs):
        for start in range(0, len(X) - B + 1, B):
            x = X[start:start + B]
            np.matmul(x, W1.T, out=Z1)
            np.matmul(Z1.T, x, out=dW1)


BIG_GEMMS = "the first layer's 2 GEMMs alone (NumPy matmul, same shapes; their 20,000 FLOP per record)"


def breakdown(workload, dtype, epochs: int, rounds: int) -> dict:
    """Seconds per epoch of W6 through each layer down to its GEMMs alone (see main)."""
    import chainrule

    X, Y = make_data(workload, workload.num_records, dtype)
    y = Y[:, 0]
    Estimator = _estimator_class("chainrule")
    start = chainrule.Network(list(workload.layer_sizes), activation=workload.hidden, output=workload.output,
                              loss=workload.loss, dtype=dtype, seed=0)

    def core(optimizer, shuffle, alpha=0.0, callback=None):
        def fit(epochs):
            start.copy().fit(X, Y, epochs=epochs, batch_size=workload.batch_size, shuffle=shuffle, seed=0,
                             optimizer=optimizer(), alpha=alpha, callback=callback)
        return fit

    def adam():
        return _sklearn_adam(workload)

    def sgd():
        return chainrule.optim.SGD(lr=workload.lr)

    alpha = ALPHA / LOSS_SCALE
    steps = {
        "chainrule.sklearn.MLPRegressor.fit (Adam, alpha 1e-4, shuffled)":
            lambda epochs: _fit(Estimator(**settings(workload, epochs)), X, y),
        "Network.fit, the estimator's settings (Adam, alpha, shuffled)": core(adam, True, alpha),
        "Network.fit, the same with a callback that does nothing": core(adam, True, alpha, lambda e, c: True),
        "Network.fit, Adam, no alpha, shuffled": core(adam, True),
        "Network.fit, plain SGD, shuffled": core(sgd, True),
        "Network.fit, plain SGD, records in order": core(sgd, False),
        BIG_GEMMS: lambda epochs: _big_gemms_alone(workload, X, epochs),
    }
    return _per_epoch(steps, epochs, rounds)


def gemm_ceiling(dtype: str) -> float:
    """GFLOP/s of the suite's GEMM ceiling (a 2048^3 NumPy matmul), best of 3, for this dtype."""
    from . import measure

    task = {"size": 2048, "repeats": 3, "dtypes": [dtype], "bandwidth_bytes": 64 << 20}
    return measure.ceiling(task, {})[dtype]["gflops"]


def main() -> None:
    import argparse

    from . import measure
    from .workloads import BY_NAME

    parser = argparse.ArgumentParser(description="Where one W6 epoch's time goes, 1 thread by default: the "
                                     "estimator, the core's fit with fewer of its parts, the GEMMs alone.")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--profile", type=int, metavar="EPOCHS",
                        help="only run Network.fit taking the estimator's steps for EPOCHS epochs (under perf)")
    parser.add_argument("--python-layer", action="store_true",
                        help="only compare an --epochs fit through the estimator with Network.fit taking the same "
                             "steps, best of --rounds each, alternated (the suite's Python-layer figure, more rounds)")
    options = parser.parse_args()
    import chainrule
    from threadpoolctl import threadpool_limits

    chainrule.set_num_threads(options.threads)
    workload, dtype = BY_NAME["W6"], np.dtype(options.dtype)
    if options.profile:
        X, Y = make_data(workload, workload.num_records, dtype)
        with threadpool_limits(limits=options.threads):
            seconds, _ = _core_fit(workload, X, Y, options.profile)
        print(f"Network.fit, {options.profile} epochs: {1e3 * seconds / options.profile:.2f} ms per epoch")
        return
    if options.python_layer:
        with threadpool_limits(limits=options.threads):
            layer = python_layer(workload, dtype, options.epochs, options.rounds)
        print(f"W6, {options.dtype}, {options.threads} thread(s), {options.epochs} epochs, best of {options.rounds} "
              f"each: the estimator {layer['estimator_seconds']:.3f} s, Network.fit {layer['core_seconds']:.3f} s, "
              f"{layer['overhead_pct']:+.1f}%; parameters differ by {layer['max_abs_param_diff']:.2g}")
        return
    with threadpool_limits(limits=options.threads):
        ceiling = gemm_ceiling(options.dtype)
        found = breakdown(workload, dtype, options.epochs, options.rounds)
        ceiling = max(ceiling, gemm_ceiling(options.dtype))
    flops = workload.flops_per_record() * workload.num_records
    print(f"W6, {options.dtype}, {options.threads} thread(s), {workload.num_records} records per epoch, best of "
          f"{options.rounds} x {options.epochs} epochs; GEMM ceiling (NumPy matmul 2048^3) {ceiling:.1f} GFLOP/s")
    print("| | ms per epoch | GFLOP/s (% of ceiling) |")
    print("|---|---|---|")
    for name, seconds in found.items():
        gflops = (flops if name != BIG_GEMMS else _first_layer_flops(workload) * workload.num_records) / seconds / 1e9
        print(f"| {name} | {1e3 * seconds:.2f} | {gflops:.1f} ({100 * gflops / ceiling:.0f}%) |")


if __name__ == "__main__":
    main()
