"""The estimators on scipy.sparse X: trained without densifying it, as scikit-learn's MLP takes it.

From the same random_state with records in order, chainrule's estimators
take scikit-learn's steps on sparse X as they do on dense X (within 1e-10
relative in float64), and give the results of the dense fit within rounding.
"""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
sparse = pytest.importorskip("scipy.sparse")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402

import reference  # noqa: E402
from chainrule.sklearn import LogisticRegression, MLPClassifier, MLPRegressor  # noqa: E402

RNG = np.random.default_rng(0)
X_SPARSE = sparse.random(240, 300, density=0.03, format="csr", random_state=1, data_rvs=RNG.standard_normal)
Y_CLASSES = RNG.integers(0, 3, 240)
Y_REG = np.asarray(X_SPARSE @ RNG.standard_normal(300)).ravel() + 0.1 * RNG.standard_normal(240)


def fit_quietly(estimator, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **kwargs)


COMMON = dict(hidden_layer_sizes=(9,), batch_size=16, shuffle=False, max_iter=3, random_state=4, tol=0.0,
              n_iter_no_change=100)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("Ours, Theirs, y", [(MLPClassifier, SkClassifier, Y_CLASSES),
                                              (MLPRegressor, SkRegressor, Y_REG)], ids=["classifier", "regressor"])
def test_sparse_fits_take_scikit_learns_steps(solver, Ours, Theirs, y):
    params = dict(COMMON, solver=solver, learning_rate_init=0.01, alpha=1e-3)
    ours = fit_quietly(Ours(**params), X_SPARSE, y)
    theirs = fit_quietly(Theirs(**params), X_SPARSE, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert reference.relative_error(a, b) < 1e-10
    assert np.allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert np.allclose(ours.predict(X_SPARSE), theirs.predict(X_SPARSE), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_predict_and_score_match_the_dense_estimator(fmt, dtype):
    X = X_SPARSE.astype(dtype).asformat(fmt)
    params = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0, batch_size=32)
    on_sparse = fit_quietly(MLPClassifier(**params), X, Y_CLASSES)
    on_dense = fit_quietly(MLPClassifier(**params), X.toarray(), Y_CLASSES)
    assert on_sparse.network_.dtype == dtype  # float32 X keeps float32 parameters, sparse or not
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    assert np.allclose(on_sparse.predict_proba(X), on_dense.predict_proba(X.toarray()), atol=tolerance)
    assert np.allclose(on_sparse.loss_curve_, on_dense.loss_curve_, rtol=tolerance)
    assert abs(on_sparse.score(X, Y_CLASSES) - on_dense.score(X.toarray(), Y_CLASSES)) <= 1 / 240


def test_partial_fit_early_stopping_and_sample_weight_take_sparse_x():
    weights = RNG.random(240)
    on_sparse = MLPRegressor(hidden_layer_sizes=(6,), random_state=0, max_iter=5, early_stopping=True,
                             n_iter_no_change=100)
    on_dense = MLPRegressor(hidden_layer_sizes=(6,), random_state=0, max_iter=5, early_stopping=True,
                            n_iter_no_change=100)
    fit_quietly(on_sparse, X_SPARSE, Y_REG, sample_weight=weights)
    fit_quietly(on_dense, X_SPARSE.toarray(), Y_REG, sample_weight=weights)
    assert np.allclose(on_sparse.validation_scores_, on_dense.validation_scores_, rtol=1e-9)
    a = MLPRegressor(hidden_layer_sizes=(6,), random_state=0)
    b = MLPRegressor(hidden_layer_sizes=(6,), random_state=0)
    for _ in range(3):
        a.partial_fit(X_SPARSE, Y_REG)
        b.partial_fit(X_SPARSE.toarray(), Y_REG)
    assert np.allclose(a.predict(X_SPARSE), b.predict(X_SPARSE.toarray()), rtol=1e-9, atol=1e-12)


def test_a_float64_sparse_x_predicted_by_a_float32_model_is_converted():
    model = fit_quietly(LogisticRegression(max_iter=3, random_state=0), X_SPARSE.astype(np.float32), Y_CLASSES)
    assert model.network_.dtype == np.float32
    assert np.allclose(model.predict_proba(X_SPARSE), model.predict_proba(X_SPARSE.toarray()), atol=1e-5)


def test_sparse_x_with_nan_or_the_wrong_width_is_refused():
    model = fit_quietly(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0), X_SPARSE, Y_CLASSES)
    with pytest.raises(ValueError, match="features"):
        model.predict(sparse.csr_matrix((3, 299)))
    bad = X_SPARSE.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier().fit(bad, Y_CLASSES)


def test_the_estimators_say_they_take_sparse_input():
    for Estimator in (MLPClassifier, MLPRegressor, LogisticRegression):
        assert Estimator().__sklearn_tags__().input_tags.sparse
