"""The estimators' solvers against scikit-learn's own estimators, step for step.

With the same random_state, chainrule's MLPClassifier and MLPRegressor draw
scikit-learn's initial weights; with shuffle=False both visit the records in
order, so after a few epochs the parameters must agree to rounding (within
1e-10 relative, float64): solver='adam' and solver='sgd' (momentum, Nesterov,
the 'invscaling' and 'adaptive' rates), with alpha, one or several outputs.
"""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import reference  # noqa: E402
from chainrule.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
X_REG, Y_REG = make_regression(200, 6, n_targets=2, noise=5.0, random_state=1)
Y_REG = Y_REG / Y_REG.std(axis=0)

SOLVERS = {
    "adam": dict(solver="adam", learning_rate_init=1e-2),
    "adam-alpha": dict(solver="adam", learning_rate_init=1e-2, alpha=1e-2, beta_1=0.8, epsilon=1e-6),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd-momentum": dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=False, momentum=0.5),
    "sgd-plain": dict(solver="sgd", learning_rate_init=0.05, momentum=0.0),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, power_t=0.3),
}


def both(Ours, Theirs, X, y, **params):
    common = {**dict(hidden_layer_sizes=(9, 5), batch_size=16, shuffle=False, max_iter=3, random_state=4, tol=0.0,
                     n_iter_no_change=100), **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Ours(**common).fit(X, y), Theirs(**common).fit(X, y)


def assert_same_parameters(ours, theirs):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        error = reference.relative_error(a, b)
        assert error < 1e-10, f"relative error {error:.3g}"


@pytest.mark.parametrize("case", list(SOLVERS))
@pytest.mark.parametrize("target", ["multiclass", "binary"])
def test_the_classifier_takes_scikit_learns_steps(case, target):
    y = Y_IRIS if target == "multiclass" else (Y_IRIS == 1).astype(int)
    ours, theirs = both(MLPClassifier, SkClassifier, X_IRIS, y, **SOLVERS[case])
    assert_same_parameters(ours, theirs)
    assert np.allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("case", list(SOLVERS))
def test_the_regressor_takes_scikit_learns_steps(case):
    ours, theirs = both(MLPRegressor, SkRegressor, X_REG, Y_REG[:, 0], **SOLVERS[case])
    assert_same_parameters(ours, theirs)
    assert np.allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)  # one output: scikit-learn's loss


def test_several_outputs_take_scikit_learns_steps():
    ours, theirs = both(MLPRegressor, SkRegressor, X_REG, Y_REG, **SOLVERS["adam-alpha"])
    assert_same_parameters(ours, theirs)


def test_the_same_random_state_draws_scikit_learns_initial_weights():
    for activation in ("relu", "logistic"):
        ours, theirs = both(MLPClassifier, SkClassifier, X_IRIS, Y_IRIS, activation=activation, max_iter=1,
                            learning_rate_init=1e-300)  # a step too small to move anything
        assert_same_parameters(ours, theirs)


def test_adaptive_divides_the_rate_as_scikit_learn_does():
    # An unreachable tol: every epoch counts as no improvement, and after
    # n_iter_no_change + 1 of them the rate is divided by 5.
    params = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=1e9, n_iter_no_change=2,
                  max_iter=12, hidden_layer_sizes=(9,), batch_size=16, shuffle=False, random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**params).fit(X_IRIS, Y_IRIS)
        theirs = SkClassifier(**params).fit(X_IRIS, Y_IRIS)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours._learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
    assert_same_parameters(ours, theirs)


@pytest.mark.skipif(tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 7),
                    reason="scikit-learn's MLP takes sample_weight since 1.7")
def test_sample_weight_takes_scikit_learns_steps():
    w = np.random.default_rng(0).integers(1, 4, len(X_IRIS)).astype(float)
    params = dict(solver="adam", learning_rate_init=1e-2, hidden_layer_sizes=(9,), batch_size=16, shuffle=False,
                  max_iter=3, random_state=4, tol=0.0, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**params).fit(X_IRIS, Y_IRIS, sample_weight=w)
        theirs = SkClassifier(**params).fit(X_IRIS, Y_IRIS, sample_weight=w)
    assert_same_parameters(ours, theirs)


def test_class_weight_weights_the_records_of_each_class():
    params = dict(solver="adam", learning_rate_init=1e-2, hidden_layer_sizes=(9,), batch_size=16, shuffle=False,
                  max_iter=3, random_state=4, tol=0.0, n_iter_no_change=100)
    weights = {0: 3.0, 1: 1.0, 2: 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_class = MLPClassifier(class_weight=weights, **params).fit(X_IRIS, Y_IRIS)
        by_record = MLPClassifier(**params).fit(X_IRIS, Y_IRIS, sample_weight=np.vectorize(weights.get)(Y_IRIS))
    assert_same_parameters(by_class, by_record)
