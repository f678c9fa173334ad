"""chainrule.sklearn: scikit-learn's own estimator checks, the meta-estimators,
and the conventions the estimators promise (docs in python/chainrule/sklearn.py).

Skipped without scikit-learn; pandas-only checks skip without pandas.
"""

import pickle
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.sklearn import LogisticRegression, MLPClassifier, MLPRegressor  # noqa: E402


# Every check of scikit-learn's suite that runs passes: none is marked as an
# expected failure. Five skip by scikit-learn's own logic: check_array_api_input
# of each of the three estimators while SCIPY_ARRAY_API is not set, and
# check_classifiers_multilabel_output_format_decision_function of
# LogisticRegression and MLPClassifier, which have no decision_function.
# (Sparse input is refused with the TypeError the checks expect; sample
# weights are not a parameter, so their checks do not run.)
@parametrize_with_checks([LogisticRegression(random_state=0), MLPClassifier(random_state=0),
                          MLPRegressor(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def scaled(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


# -- targets: binary, multi-label, multi-class with string and integer labels ----------------


@pytest.mark.parametrize("labels", ["strings", "integers"])
def test_multiclass_labels_of_either_kind(labels):
    X, y = scaled(load_iris)
    y = np.array(["setosa", "versicolor", "virginica"])[y] if labels == "strings" else y * 10 + 3
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=300, batch_size=16).fit(X, y)
    assert clf.network_.activations[-1] == "softmax" and clf.network_.loss == "cce"
    assert clf.out_activation_ == "softmax"
    assert list(clf.classes_) == sorted(set(y.tolist()))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1)
    assert set(clf.predict(X)) <= set(clf.classes_)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, y) > 0.9


def test_binary_uses_one_sigmoid_output():
    X, y = scaled(load_breast_cancer)
    y = np.where(y == 1, "benign", "malignant")
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=50).fit(X, y)
    assert clf.network_.layer_sizes[-1] == 1 and clf.network_.loss == "bce" and clf.out_activation_ == "logistic"
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(proba[:, 1] > 0.5).astype(int)])


def test_multilabel_uses_one_sigmoid_per_label():
    X, Y = make_multilabel_classification(n_samples=200, n_classes=4, random_state=0)
    X = StandardScaler().fit_transform(X)
    clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=300, batch_size=16).fit(X, Y)
    assert clf.network_.layer_sizes[-1] == 4 and clf.network_.loss == "bce"
    assert clf.predict(X).shape == Y.shape and clf.predict_proba(X).shape == Y.shape
    assert clf.score(X, Y) > 0.5  # subset accuracy on 4 labels
    np.testing.assert_array_equal(clf.classes_, np.arange(4))


def test_logistic_regression_is_one_neuron_or_softmax_regression():
    X, y = scaled(load_breast_cancer)
    binary = LogisticRegression(random_state=0).fit(X, y)
    assert binary.network_.layer_sizes == (30, 1) and binary.coef_.shape == (1, 30) and binary.intercept_.shape == (1,)
    assert binary.score(X, y) > 0.95
    X, y = scaled(load_iris)
    multinomial = LogisticRegression(random_state=0, batch_size=16).fit(X, y)
    assert multinomial.network_.layer_sizes == (4, 3) and multinomial.network_.activations == ("softmax",)
    assert multinomial.coef_.shape == (3, 4) and multinomial.score(X, y) > 0.9


def test_regressor_shapes_follow_y():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    reg = MLPRegressor(hidden_layer_sizes=(16,), random_state=0, max_iter=300, learning_rate_init=0.01).fit(X, y)
    assert reg.predict(X).shape == (100,) and reg.score(X, y) > 0.9
    Y = np.column_stack([y, -y])
    assert MLPRegressor(hidden_layer_sizes=(8,), random_state=0, max_iter=20).fit(X, Y).predict(X).shape == (100, 2)


# -- conventions: input conversion, learned state, parameters -----------------------------------


def test_lists_other_dtypes_and_pandas_frames_are_converted_once():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=["sepal length", "sepal width", "petal length", "petal width"])
    from_frame = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=5).fit(frame, y)
    np.testing.assert_array_equal(from_frame.feature_names_in_, frame.columns)
    assert from_frame.n_features_in_ == 4
    from_list = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=5).fit(X.tolist(), y.tolist())
    from_int = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=5).fit((X * 10).astype(np.int32), y)
    np.testing.assert_array_equal(from_list.predict(X), from_frame.predict(frame))
    assert from_int.predict(X).shape == (150,)
    with pytest.warns(UserWarning, match="feature names"):
        from_frame.predict(X)  # fitted with names, asked without: scikit-learn's warning


def test_learned_state_and_its_layout():
    X, y = scaled(load_iris)
    clf = MLPClassifier(hidden_layer_sizes=(5, 6), random_state=0, max_iter=10)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    assert not hasattr(clf, "coefs_")
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        assert clf.fit(X, y) is clf
    assert [c.shape for c in clf.coefs_] == [(4, 5), (5, 6), (6, 3)]  # scikit-learn's (n_in, n_out)
    np.testing.assert_array_equal(clf.coefs_[0], clf.network_.weights[0].T)
    assert [b.shape for b in clf.intercepts_] == [(5,), (6,), (3,)]
    assert clf.n_iter_ == 10 == len(clf.loss_curve_) and clf.t_ == 10 * len(X) and clf.n_layers_ == 4
    assert clf.n_outputs_ == 3 and clf.best_loss_ == min(clf.loss_curve_)


@pytest.mark.parametrize("params, message", [
    ({"learning_rate_init": 0}, "learning_rate_init"),
    ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes"),
    ({"activation": "softmax"}, "activation"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_iter": 0}, "max_iter"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"dtype": "float16"}, "dtype"),
    ({"n_iter_no_change": 0}, "n_iter_no_change"),
    ({"n_iter_no_change": 2.5}, "n_iter_no_change"),
    ({"n_iter_no_change": -np.inf}, "n_iter_no_change"),
])
def test_parameters_are_validated_in_fit(params, message):
    clf = MLPClassifier(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=message):
        clf.fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])


def test_random_state_repeats_and_float32_works():
    X, y = scaled(load_iris)
    first = MLPClassifier(hidden_layer_sizes=(8,), random_state=3, max_iter=20).fit(X, y)
    second = MLPClassifier(hidden_layer_sizes=(8,), random_state=3, max_iter=20).fit(X, y)
    assert first.loss_curve_ == second.loss_curve_
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    single = MLPClassifier(hidden_layer_sizes=(8,), random_state=3, max_iter=20, batch_size=16,
                           dtype="float32").fit(X, y)
    assert single.network_.dtype == np.float32 and single.score(X, y) > 0.8


# -- training controls: partial_fit, warm_start, early stopping, convergence, verbose -------------


def test_partial_fit_needs_classes_first_and_runs_one_epoch():
    X, y = scaled(load_iris)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, batch_size=16, solver="sgd", momentum=0.0,
                        learning_rate_init=0.1, alpha=0.0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:50], y[:50], classes=[0, 1, 2])  # only class 0 in this block
    assert clf.n_iter_ == 1 and list(clf.classes_) == [0, 1, 2] and clf.network_.layer_sizes[-1] == 3
    for _ in range(30):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 31 and clf.score(X, y) > 0.8
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:2], [0, 7])


def test_warm_start_continues_and_cold_start_resets():
    X, y = scaled(load_iris)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=5, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        weights = clf.coefs_[0].copy()
        clf.fit(X, y)
        assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 10
        assert not np.array_equal(weights, clf.coefs_[0])
        clf.set_params(warm_start=False).fit(X, y)
    assert clf.n_iter_ == 5


def test_early_stopping_restores_the_best_validation_parameters():
    X, y = scaled(load_digits)
    clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, max_iter=200, early_stopping=True,
                        n_iter_no_change=3, validation_fraction=0.2, learning_rate_init=0.05)
    clf.fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # The restored parameters score the best validation score on the same split.
    _, X_val, _, y_val = train_test_split(X, y, random_state=_split_state(0, clf.network_.layer_sizes),
                                          test_size=0.2, stratify=y)
    assert clf.score(X_val, y_val) == pytest.approx(clf.best_validation_score_)
    assert clf.best_loss_ is None


def _split_state(random_state, layer_sizes, logistic=False):
    """The RandomState that fit hands to train_test_split: after the initial weights' draws (scikit-learn's)."""
    state = np.random.RandomState(random_state)
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        bound = np.sqrt((2.0 if logistic else 6.0) / (n_in + n_out))
        state.uniform(-bound, bound, (n_in, n_out))
        state.uniform(-bound, bound, n_out)
    return state


def test_convergence_warning_only_at_max_iter():
    X, y = scaled(load_iris)
    with pytest.warns(ConvergenceWarning):
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=500, tol=0.1).fit(X, y)
    assert clf.n_iter_ < 500


def test_verbose_prints_each_epoch_with_the_validation_score(capsys, monkeypatch):
    import chainrule._progress as progress

    monkeypatch.setattr(progress, "_tqdm", lambda: None)  # plain lines, as without tqdm
    X, y = scaled(load_iris)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=4, verbose=True, early_stopping=True,
                        validation_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for epoch, (line, loss, score) in enumerate(zip(lines, clf.loss_curve_, clf.validation_scores_), start=1):
        assert re.fullmatch(rf"Iteration {epoch}, loss = {loss:.8f}, validation score = {score:.6f}", line)


# -- Network.fit: callback and progress see the history -----------------------------------------


@pytest.mark.parametrize("progress", ["lines", "bar", True])
def test_network_fit_progress_and_callback_see_the_history(capsys, progress):
    if progress == "bar":
        pytest.importorskip("tqdm")
    X, y = scaled(load_breast_cancer)
    X, y = np.ascontiguousarray(X), np.ascontiguousarray(y, dtype=np.float64)
    net = cr.Network([30, 8, 1], activation="tanh", seed=0)
    seen = []
    history = net.fit(X, y, epochs=6, lr=0.1, seed=0, progress=progress,
                      callback=lambda epoch, cost: seen.append((epoch, cost)))
    assert seen == list(enumerate(history.tolist()))
    captured = capsys.readouterr()
    if progress == "lines":
        assert captured.out.splitlines() == [f"Iteration {e + 1}, loss = {c:.8f}" for e, c in seen]
    elif progress == "bar":
        assert "6/6" in captured.err


def test_network_fit_callback_stops_and_progress_is_checked():
    X = np.zeros((4, 2))
    y = np.zeros(4)
    net = cr.Network([2, 1], seed=0)
    assert len(net.fit(X, y, epochs=10, callback=lambda epoch, cost: epoch < 2, progress="lines")) == 3
    with pytest.raises(ValueError, match="progress"):
        net.fit(X, y, progress="fancy")


# -- meta-estimators, clone, pickle -------------------------------------------------------------


def test_pipeline_and_grid_search_with_two_jobs():
    X, y = load_iris(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=100,
                                                              batch_size=16))
    search = GridSearchCV(pipeline, {"mlpclassifier__learning_rate_init": [0.01, 0.1]}, cv=3, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_score_ > 0.85
    assert search.best_estimator_.score(X, y) > 0.9


def test_clone_and_pickle_round_trip():
    X, y = scaled(load_iris)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "network_")
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    assert restored.loss_curve_ == clf.loss_curve_


# -- accuracy against scikit-learn's own MLPClassifier, measured here -----------------------------


@pytest.mark.parametrize("loader", [load_iris, load_digits, load_breast_cancer], ids=["iris", "digits", "breast-cancer"])
def test_accuracy_is_on_par_with_sklearn(loader):
    X, y = scaled(loader)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    ours_scores, theirs_scores = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in range(3):  # one test record of iris is 0.026: average over initialisations
            ours = MLPClassifier(hidden_layer_sizes=(64,), random_state=seed, max_iter=200).fit(X_train, y_train)
            theirs = SklearnMLPClassifier(hidden_layer_sizes=(64,), random_state=seed, max_iter=200)
            theirs.fit(X_train, y_train)
            ours_scores.append(ours.score(X_test, y_test))
            theirs_scores.append(theirs.score(X_test, y_test))
    # Same architecture, epochs and optimizer (Adam, alpha=1e-4): they differ by their initial weights only.
    assert np.mean(ours_scores) >= np.mean(theirs_scores) - 0.03, (ours_scores, theirs_scores)


def test_digits_example_writes_its_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "python" / "examples" / "digits.py"
    spec = importlib.util.spec_from_file_location("digits_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path / "curves.png"
    example.main(str(output))
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    accuracies = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", printed)]
    assert len(accuracies) == 2 and accuracies[0] > accuracies[1] - 0.03  # chainrule, then scikit-learn


# -- scikit-learn's behaviour where ours differed (issue 16) -------------------------------------


@pytest.mark.parametrize("Estimator", [MLPClassifier, LogisticRegression])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_single_class_predicts_one_label_per_record(Estimator, early_stopping):
    X, _ = scaled(load_iris)
    y = np.full(len(X), "only")
    clf = Estimator(random_state=0, max_iter=12, early_stopping=early_stopping)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)  # early stopping scores the held-out records with predict
    predictions = clf.predict(X[:7])
    assert predictions.shape == (7,) and predictions.tolist() == ["only"] * 7
    assert clf.score(X, y) == 1.0
    assert clf.predict_proba(X[:7]).tolist() == [[1.0]] * 7
    if early_stopping:
        assert clf.validation_scores_ == [1.0] * clf.n_iter_


def test_n_iter_no_change_inf_never_stops_early():
    X, y = scaled(load_iris)
    # tol=1e9: every epoch after the first counts as no improvement.
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=30, tol=1e9, n_iter_no_change=np.inf)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf.fit(X, y)
    assert clf.n_iter_ == 30 and clf._no_improvement_count == 29
    stopped = clone(clf).set_params(n_iter_no_change=5).fit(X, y)  # the same rule with a finite count stops
    assert stopped.n_iter_ == 7


@pytest.mark.parametrize("labels", [[0, 1], [0, 1, 3], [0, 1, 2, 3]], ids=["subset", "other", "superset"])
def test_a_warm_refit_needs_the_classes_of_the_previous_fit(labels):
    X, y = scaled(load_iris)
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=3, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before = (pickle.dumps(clf.network_), list(clf.loss_curve_), clf.n_iter_, clf.t_)
    y_new = np.array(labels)[np.arange(len(X)) % len(labels)]
    # scikit-learn's message, word for word
    message = ("warm_start can only be used where `y` has the same classes as in the previous call to fit. "
               f"Previously got [0 1 2], `y` has {np.unique(y_new)}")
    with pytest.raises(ValueError, match=re.escape(message)):
        clf.fit(X, y_new)
    assert (pickle.dumps(clf.network_), list(clf.loss_curve_), clf.n_iter_, clf.t_) == before  # unchanged
    clf.partial_fit(X[:50], y[:50])  # partial_fit still takes a block that holds some of the classes
    assert list(clf.classes_) == [0, 1, 2]


@pytest.mark.parametrize("Estimator", [MLPClassifier, LogisticRegression, MLPRegressor])
def test_partial_fit_refuses_early_stopping(Estimator):
    X, y = scaled(load_iris)
    estimator = Estimator(random_state=0, max_iter=20, early_stopping=True)
    classes = {} if Estimator is MLPRegressor else {"classes": [0, 1, 2]}
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        estimator.partial_fit(X, y, **classes)
    assert not hasattr(estimator, "network_") and not hasattr(estimator, "n_features_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    before = (pickle.dumps(estimator.network_), list(estimator.loss_curve_), estimator.n_iter_)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        estimator.partial_fit(X, y)
    assert (pickle.dumps(estimator.network_), list(estimator.loss_curve_), estimator.n_iter_) == before


@pytest.mark.parametrize("Estimator", [MLPClassifier, LogisticRegression, MLPRegressor])
def test_n_iter_counts_the_epochs_of_each_call(Estimator):
    # scikit-learn's semantics: n_iter_ counts the epochs of the last fit or
    # partial_fit call; loss_curve_ and t_ keep accumulating over warm fits
    # and partial_fit calls; a cold fit starts them all anew.
    X, y = scaled(load_iris)
    n = len(X)
    estimator = Estimator(random_state=0, max_iter=5, warm_start=True)  # 5 < n_iter_no_change: no early stop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
        assert (estimator.n_iter_, len(estimator.loss_curve_), estimator.t_) == (5, 5, 5 * n)
        estimator.fit(X, y)
        assert (estimator.n_iter_, len(estimator.loss_curve_), estimator.t_) == (5, 10, 10 * n)
        estimator.partial_fit(X, y)
        assert (estimator.n_iter_, len(estimator.loss_curve_), estimator.t_) == (1, 11, 11 * n)
        estimator.partial_fit(X[:40], y[:40])
        assert (estimator.n_iter_, len(estimator.loss_curve_), estimator.t_) == (1, 12, 11 * n + 40)
        estimator.set_params(warm_start=False, max_iter=3).fit(X, y)
        assert (estimator.n_iter_, len(estimator.loss_curve_), estimator.t_) == (3, 3, 3 * n)


@pytest.mark.parametrize("Estimator", [MLPClassifier, LogisticRegression, MLPRegressor])
@pytest.mark.parametrize("x_dtype, expected", [(np.float32, np.float32), (np.float64, np.float64),
                                               (np.int64, np.float64), (np.float16, np.float64)])
def test_the_parameters_take_the_dtype_of_X(Estimator, x_dtype, expected):
    # scikit-learn keeps float32 input in float32 and converts other dtypes to float64.
    X, y = load_iris(return_X_y=True)
    X = (X * 10).astype(x_dtype)
    estimator = Estimator(random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    assert estimator.network_.dtype == expected
    assert all(c.dtype == expected for c in estimator.coefs_ + estimator.intercepts_)
    if Estimator is MLPRegressor:
        assert estimator.predict(X).dtype == expected
    else:
        assert estimator.predict_proba(X).dtype == expected
    # Later calls convert their X to the parameters' dtype, whatever it is.
    other = np.float64 if expected == np.float32 else np.float32
    estimator.partial_fit(X.astype(other), y)
    assert estimator.network_.dtype == expected
    assert estimator.predict(X.astype(other)).shape[0] == len(X)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_dtype", [np.float32, np.float64, np.int64])
def test_an_explicit_dtype_overrides_the_dtype_of_X(dtype, x_dtype):
    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=3, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((X * 10).astype(x_dtype), y)
    assert clf.network_.dtype == dtype and clf.predict_proba(X).dtype == dtype
    assert clf.get_params()["dtype"] == dtype and MLPClassifier().dtype is None


def diverging_regressor(**params):
    # Unscaled iris with a learning rate far too large: the costs grow each
    # epoch until one overflows (scikit-learn's test_mlp_diverging_loss uses
    # learning_rate_init=1 with its halved loss; ours diverges in epoch 6 there).
    # Plain SGD (momentum 0, no alpha) at 0.01 on chainrule's MSE: scikit-learn's
    # gradient is half of it, so learning_rate_init=0.02 in its terms.
    return MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd", momentum=0.0, alpha=0.0,
                        learning_rate_init=0.02, max_iter=20, random_state=0, **params)


def test_a_diverging_fit_with_early_stopping_returns_the_best_validated_parameters():
    X, y = load_iris(return_X_y=True)
    reg = diverging_regressor(early_stopping=True)
    with pytest.warns(ConvergenceWarning, match=r"Training diverged in epoch 10 \(training diverged at epoch 10"):
        reg.fit(X, y)
    # As in scikit-learn, an epoch whose R^2 overflows scores -inf (9) and the
    # diverged one (10) nan; unlike scikit-learn, training stops at the latter.
    scores = reg.validation_scores_
    assert reg.n_iter_ == 10 == len(scores) == len(reg.loss_curve_) and reg.t_ == 9 * 135
    assert np.isfinite(scores[:8]).all() and scores[8] == -np.inf and np.isnan(scores[9])
    assert np.isfinite(reg.loss_curve_[:9]).all() and np.isnan(reg.loss_curve_[9])
    assert reg.best_validation_score_ == max(scores[:8]) == scores[0]
    _, X_val, _, y_val = train_test_split(X, y, random_state=_split_state(0, reg.network_.layer_sizes),
                                          test_size=0.1)
    assert reg.score(X_val, y_val) == pytest.approx(reg.best_validation_score_)  # those parameters, restored


def test_a_diverging_fit_without_early_stopping_raises():
    X, y = load_iris(return_X_y=True)
    reg = diverging_regressor()
    with pytest.raises(cr.DivergenceError, match="diverged at epoch 10"):
        reg.fit(X, y)
    assert all(np.isfinite(p).all() for p in reg.coefs_ + reg.intercepts_)  # from before the offending step
    # Early stopping with nothing validated yet (divergence in the first epoch) raises too.
    huge = np.finfo(np.float64).max * np.random.RandomState(0).uniform(size=(20, 2))
    with pytest.raises(cr.DivergenceError, match="diverged at epoch 1,"):
        MLPRegressor(early_stopping=True, random_state=0).fit(huge, np.arange(20.0))
