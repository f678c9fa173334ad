"""solver='lbfgs' of the scikit-learn estimators, and the core's Network.cost_and_gradient it calls.

The estimators minimize the full-data cost with scipy's L-BFGS-B, chainrule
computing the cost and its gradient (docs/math.md, "L-BFGS"). L-BFGS-B is
deterministic given the function values and gradients, and the estimators
draw scikit-learn's initial weights from the same random_state, so in
float64 chainrule's iterates follow scikit-learn's: they differ only by the
rounding of the sums (chainrule's kernels add in another order, ~1e-16
relative per evaluation), which L-BFGS's curvature updates can amplify over
the iterations. Measured over 15 iterations: at most ~1e-14 of the largest
parameter. The tolerance, 1e-8, leaves a margin of 10^5 above that; any
difference in the objective (a penalty divided by another count, the
squared error not halved, a gradient of another loss) moves the parameters
by 1e-3 or more of their size within the first iterations.
"""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.7")  # scikit-learn's MLP takes sample_weight from 1.7

from sklearn import neural_network
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from chainrule import DivergenceError, Network
from chainrule.sklearn import LogisticRegression, MLPClassifier, MLPRegressor

RTOL = 1e-8  # of the largest parameter: see the module's docstring


def _digits(n_class=10, records=300):
    X, y = load_digits(n_class=n_class, return_X_y=True)
    return X[:records] / 16.0, y[:records]


def _regression(outputs=1, records=200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(records, 6)
    Y = np.c_[X.sum(axis=1), X[:, 0] ** 2, np.sin(X[:, 1])][:, :outputs]
    return X, (Y[:, 0] if outputs == 1 else Y)


def _fit_quietly(estimator, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, on purpose
        return estimator.fit(X, y, **kwargs)


def _assert_same_parameters(ours, theirs):
    scale = max(np.abs(c).max() for c in theirs.coefs_)
    for mine, reference in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=RTOL * scale)


CASES = {
    "multiclass relu": (MLPClassifier, neural_network.MLPClassifier, lambda: _digits(10), {}),
    "binary tanh alpha": (MLPClassifier, neural_network.MLPClassifier, lambda: _digits(2),
                          {"activation": "tanh", "alpha": 1e-2}),
    "multilabel logistic": (MLPClassifier, neural_network.MLPClassifier,
                            lambda: make_multilabel_classification(n_samples=100, random_state=0),
                            {"activation": "logistic", "hidden_layer_sizes": (20, 10)}),
    "regressor relu alpha": (MLPRegressor, neural_network.MLPRegressor, _regression, {"alpha": 0.1}),
    "regressor identity": (MLPRegressor, neural_network.MLPRegressor, _regression, {"activation": "identity"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_takes_sklearns_iterates_in_float64(case, weighted):
    ours_class, theirs_class, data, params = CASES[case]
    X, y = data()
    sample_weight = np.random.RandomState(1).uniform(0.2, 2.0, len(X)) if weighted else None
    for max_iter in (3, 15):
        settings = dict(solver="lbfgs", max_iter=max_iter, random_state=0, **params)
        ours = _fit_quietly(ours_class(**settings), X, y, sample_weight=sample_weight)
        theirs = _fit_quietly(theirs_class(**settings), X, y, sample_weight=sample_weight)
        assert ours.network_.dtype == np.float64
        assert ours.n_iter_ == theirs.n_iter_ <= max_iter
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=RTOL)
        _assert_same_parameters(ours, theirs)


def test_lbfgs_has_no_loss_curve_nor_stopping_state_as_in_sklearn():
    X, y = _digits(3)
    ours = _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=5, random_state=0), X, y)
    theirs = _fit_quietly(neural_network.MLPClassifier(solver="lbfgs", max_iter=5, random_state=0), X, y)
    for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
        assert hasattr(ours, name) == hasattr(theirs, name) == False  # noqa: E712
    assert ours.t_ == theirs.t_ == 0
    assert np.isfinite(ours.loss_)


def test_lbfgs_ignores_early_stopping_as_sklearn_does():
    # scikit-learn holds nothing out for lbfgs: the fit is that without early_stopping.
    X, y = _digits(3)
    plain = _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=10, random_state=0), X, y)
    early = _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=10, random_state=0, early_stopping=True), X, y)
    for a, b in zip(plain.coefs_, early.coefs_):
        np.testing.assert_array_equal(a, b)


def test_multioutput_regressor_reports_sklearns_loss():
    # The objective minimized is the one whose gradient scikit-learn uses
    # (the data term summed over the outputs); loss_ is scikit-learn's value:
    # half the squared error averaged over records and outputs, plus the penalty.
    X, Y = _regression(outputs=3)
    alpha = 0.1
    model = _fit_quietly(MLPRegressor(solver="lbfgs", max_iter=30, alpha=alpha, random_state=0), X, Y)
    penalty = 0.5 * alpha * sum(np.sum(w**2) for w in model.coefs_) / len(X)
    expected = 0.5 * np.mean((Y - model.predict(X)) ** 2) + penalty
    assert model.loss_ == pytest.approx(expected, rel=1e-10)
    # ... and it learns what scikit-learn's learns from the same start.
    theirs = _fit_quietly(neural_network.MLPRegressor(solver="lbfgs", max_iter=30, alpha=alpha, random_state=0),
                          X, Y)
    assert model.score(X, Y) == pytest.approx(theirs.score(X, Y), abs=0.02)


@pytest.mark.parametrize("n_class", [2, 3])
def test_logistic_regression_lbfgs_reaches_sklearns_optimum(n_class):
    # alpha = 1 / C: both minimize mean loss + ||W||^2 / (2 C n) (binary: BCE; multinomial: CCE).
    X, y = load_breast_cancer(return_X_y=True) if n_class == 2 else load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    ours = LogisticRegression(solver="lbfgs", alpha=1.0, tol=1e-10, max_iter=2000, random_state=0).fit(X, y)
    theirs = SklearnLogisticRegression(C=1.0, tol=1e-10, max_iter=2000).fit(X, y)

    def objective(coef, intercept):
        z = X @ coef.T + intercept
        if n_class == 2:
            z = z[:, 0]
            loss = np.mean(np.logaddexp(0, z) - (y == 1) * z)
        else:
            loss = np.mean(np.logaddexp.reduce(z, axis=1) - z[np.arange(len(y)), y])
        return loss + 0.5 * np.sum(coef**2) / len(X)

    # L-BFGS-B stops on the relative decrease of f (scipy's ftol, ~2e-9): the
    # optima agree to that in value and to ~1e-3 in the parameters.
    assert objective(ours.coef_, ours.intercept_) == pytest.approx(objective(theirs.coef_, theirs.intercept_),
                                                                   rel=1e-7)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=2e-3 * np.abs(theirs.coef_).max())


def test_float32_trains_float32_parameters_close_to_float64():
    # scipy's L-BFGS-B works in float64: each evaluation rounds its point to the
    # float32 parameters, and the cost and gradient come from float32 arithmetic.
    X, y = _digits(10)
    f64 = _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=40, random_state=0), X, y)
    f32 = _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=40, random_state=0), X.astype(np.float32), y)
    assert f32.network_.dtype == np.float32 and f32.coefs_[0].dtype == np.float32
    assert f32.loss_ == pytest.approx(f64.loss_, rel=0.05)
    assert f32.score(X, y) == pytest.approx(f64.score(X, y), abs=0.02)


def test_max_iter_reached_warns_and_counts():
    X, y = _digits(3)
    model = MLPClassifier(solver="lbfgs", max_iter=4, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after 4 iteration\(s\).*max_iter=4"):
        model.fit(X, y)
    assert model.n_iter_ == 4


def test_max_fun_limits_the_evaluations(monkeypatch):
    X, y = _digits(3)
    calls = []
    original = Network.cost_and_gradient

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Network, "cost_and_gradient", counted)
    model = MLPClassifier(solver="lbfgs", max_iter=500, max_fun=7, random_state=0)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        model.fit(X, y)
    # scipy stops once the count exceeds max_fun, after the line search in progress.
    assert 7 <= len(calls) <= 7 + 20 and model.n_iter_ <= 7


def test_tol_is_the_gradient_tolerance():
    # A large tol (scipy's gtol: the largest projected gradient) stops early, without a warning.
    X, y = _digits(3)
    loose = MLPClassifier(solver="lbfgs", tol=1e-1, max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        loose.fit(X, y)
    tight = _fit_quietly(MLPClassifier(solver="lbfgs", tol=1e-6, max_iter=200, random_state=0), X, y)
    assert loose.n_iter_ < tight.n_iter_
    assert tight.loss_ < loose.loss_


def test_warm_start_continues_from_the_fitted_parameters():
    X, y = _regression()
    model = _fit_quietly(MLPRegressor(solver="lbfgs", max_iter=5, warm_start=True, random_state=0), X, y)
    first = model.loss_
    _fit_quietly(model, X, y)
    assert model.n_iter_ == 5
    ten = _fit_quietly(MLPRegressor(solver="lbfgs", max_iter=10, random_state=0), X, y)
    assert model.loss_ < first
    assert model.loss_ == pytest.approx(ten.loss_, rel=0.5)  # not the same: L-BFGS's memory starts afresh


def test_verbose_reports_each_iteration(capsys, monkeypatch):
    monkeypatch.setattr("chainrule._progress._tqdm", lambda: None)  # plain lines, not a bar
    X, y = _digits(3)
    _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=3, verbose=True, random_state=0), X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Iteration")]
    assert [line.split(",")[0] for line in lines] == ["Iteration 1", "Iteration 2", "Iteration 3"]


def test_lbfgs_has_no_partial_fit():
    for cls in (MLPClassifier, MLPRegressor, LogisticRegression):
        assert not hasattr(cls(solver="lbfgs"), "partial_fit")
        assert hasattr(cls(solver="sgd"), "partial_fit")
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as raised:
            cls(solver="lbfgs").partial_fit
        assert "partial_fit is only available for stochastic optimizers. lbfgs" in str(raised.value.__cause__)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor, LogisticRegression])
@pytest.mark.parametrize("argument, value", [("solver", "newton"), ("max_fun", 0), ("max_fun", 2.5),
                                             ("max_fun", -1)])
def test_bad_solver_or_max_fun_is_refused_naming_it(cls, argument, value):
    X, y = _digits(2, records=60)
    model = _fit_quietly(cls(solver="lbfgs", max_iter=3, random_state=0, warm_start=True), X, y)
    before = model.network_.params.copy()
    model.set_params(**{argument: value})
    with pytest.raises(InvalidParameterError, match=f"'{argument}' parameter of {cls.__name__} must be"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.network_.params, before)  # the model as it was


def test_divergence_raises_and_leaves_the_parameters_as_they_were():
    X, y = _regression()
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    model = _fit_quietly(MLPRegressor(solver="lbfgs", activation="identity", max_iter=3, random_state=0,
                                      warm_start=True), X32, y32)
    before = model.network_.params.copy()
    with pytest.raises(DivergenceError, match="float32"):
        model.fit(X32 * np.float32(1e25), y32)
    np.testing.assert_array_equal(model.network_.params, before)


def test_scipy_missing_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("No module named 'scipy'")
        return real_import(name, *args, **kwargs)

    X, y = _digits(2, records=60)
    model = MLPClassifier(solver="lbfgs", random_state=0)
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    with pytest.raises(ImportError, match=r"solver='lbfgs' needs scipy.*chainrule\[sklearn\]"):
        model.fit(X, y)


# -- the core's one call: Network.cost_and_gradient ---------------------------

def _flat(gradients):
    return np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in gradients])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cost_and_gradient_is_cost_and_gradients_plus_the_penalty(dtype, weighted):
    rng = np.random.RandomState(0)
    net = Network([5, 7, 3], activation="tanh", output="softmax", loss="cce", dtype=dtype, seed=1)
    X = rng.randn(40, 5).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.randint(0, 3, 40)]
    w = rng.uniform(0.5, 2.0, 40).astype(dtype) if weighted else None
    alpha = 0.3
    total = w.astype(np.float64).sum() if weighted else 40.0
    cost, gradient = net.cost_and_gradient(X, Y, sample_weight=w, alpha=alpha)
    assert gradient.dtype == np.dtype(dtype) and gradient.shape == (net.n_params,)
    squared = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in net.weights)
    rel = 1e-5 if dtype == "float32" else 1e-12
    assert cost == pytest.approx(net.cost(X, Y, sample_weight=w) + 0.5 * alpha * squared / total, rel=rel)
    expected = _flat([(dW + alpha / total * W, db) for (dW, db), W in zip(net.gradients(X, Y, sample_weight=w),
                                                                            net.weights)])
    np.testing.assert_allclose(gradient, expected, rtol=rel, atol=rel * 1e-2)


def test_cost_and_gradient_against_central_differences_through_params():
    rng = np.random.RandomState(2)
    net = Network([4, 6, 2], activation="relu", output="identity", loss="mse", dtype="float64", seed=3)
    for bias in net.biases:
        bias[...] = 0.1  # away from relu's kink at 0, which central differences cannot see
    X, Y = rng.randn(30, 4), rng.randn(30, 2)
    alpha = 0.7
    _, gradient = net.cost_and_gradient(X, Y, alpha=alpha)
    params = net.params
    assert np.shares_memory(params, net.weights[0])  # the flat buffer the weights are views of
    x0 = params.copy()
    h = 1e-6
    for i in rng.choice(net.n_params, 12, replace=False):
        params[i] = x0[i] + h
        up, _ = net.cost_and_gradient(X, Y, alpha=alpha)
        params[i] = x0[i] - h
        down, _ = net.cost_and_gradient(X, Y, alpha=alpha)
        params[i] = x0[i]
        assert gradient[i] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_cost_and_gradient_refuses_bad_alpha_and_leaves_the_network():
    net = Network([3, 1], dtype="float64", seed=0)
    X, Y = np.ones((4, 3)), np.ones((4, 1))
    before = net.params.copy()
    for alpha in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
            net.cost_and_gradient(X, Y, alpha=alpha)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        net.cost_and_gradient(X, Y, alpha="0.1")
    with pytest.raises(ValueError, match="sample_weight"):
        net.cost_and_gradient(X, Y, sample_weight=np.ones(3))
    np.testing.assert_array_equal(net.params, before)


def test_cost_and_gradient_reads_X_in_place_and_never_converts_it():
    # X of another dtype or order is refused, not copied (the core's rule for every call).
    net = Network([3, 1], dtype="float64", seed=0)
    Y = np.ones((4, 1))
    with pytest.raises((TypeError, ValueError)):
        net.cost_and_gradient(np.ones((4, 3), dtype=np.float32), Y)
    with pytest.raises((TypeError, ValueError)):
        net.cost_and_gradient(np.ones((3, 4)).T, Y)


def test_warm_switch_from_lbfgs_to_adam_starts_the_loss_curve():
    # lbfgs keeps no epochs; a warm adam fit after it continues from its
    # parameters and starts loss_curve_ and the stopping rule afresh.
    X, y = _digits(3)
    model = _fit_quietly(MLPClassifier(solver="lbfgs", max_iter=5, warm_start=True, random_state=0), X, y)
    after_lbfgs = model.network_.params.copy()
    model.set_params(solver="adam", max_iter=3)
    _fit_quietly(model, X, y)
    assert len(model.loss_curve_) == model.n_iter_ == 3 and model.best_loss_ == min(model.loss_curve_)
    assert model.loss_curve_[0] < 1.0  # from lbfgs's parameters, not fresh ones
    assert not np.array_equal(model.network_.params, after_lbfgs)
