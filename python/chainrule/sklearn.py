"""scikit-learn estimators trained by chainrule's C++ core.

``MLPClassifier``, ``MLPRegressor`` and ``LogisticRegression`` follow
scikit-learn's conventions (``__init__`` stores its arguments, ``fit``
validates them and returns ``self``, learned state ends in ``_``), so they drop
into pipelines, grid searches, ``clone`` and pickling. Unlike
:class:`chainrule.Network`, which reads arrays in place and never converts,
this layer accepts whatever scikit-learn accepts (lists, other dtypes, pandas
frames) and converts it once per call to a C-contiguous array of the
parameters' dtype. As in scikit-learn, that dtype comes from X at the first
fit (float32 X trains float32 parameters, float64 X float64, any other dtype
float64) unless the estimator's ``dtype`` names one. Sparse X (any
scipy.sparse format) is accepted by ``fit``, ``partial_fit``, ``predict``,
``predict_proba`` and ``score``, and trained on without densifying it: CSR
is read in place, other formats are converted to CSR first (a copy), as
scikit-learn's MLP does.

The optimisers are scikit-learn's: ``solver='adam'`` (the default) and
``solver='sgd'`` (with momentum, Nesterov's momentum, and the 'constant',
'invscaling' and 'adaptive' learning rates), with the L2 penalty ``alpha``,
run by chainrule's core in scikit-learn's form (docs/math.md, "Optimizers"):
from the same initial weights, records in order, they take scikit-learn's
steps. ``loss_curve_``, ``loss_`` and ``best_loss_`` are scikit-learn's
numbers: the squared loss of the regressor is halved and divided by the
outputs (chainrule's MSE is summed over them and not halved; this layer
scales its learning rate, ``alpha`` and Adam's eps so that the steps are
scikit-learn's). ``solver='lbfgs'`` minimizes the full-data cost with scipy's
L-BFGS-B, chainrule computing the cost and its gradient in one call
(``Network.cost_and_gradient``); from the same random_state it takes
scikit-learn's iterates (docs/math.md, "L-BFGS").

scikit-learn (and scipy, for solver='lbfgs') are optional dependencies:
``pip install 'chainrule[sklearn]'``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Optional, TypeVar

import numpy as np
import numpy.typing as npt

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin  # type: ignore[import-untyped]  # scikit-learn ships no type information
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data
    from scipy.sparse import issparse  # scikit-learn depends on scipy
except ImportError as error:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("chainrule.sklearn needs scikit-learn >= 1.6: pip install 'chainrule[sklearn]'") from error

from . import optim
from ._core import DivergenceError
from ._progress import EpochProgress
from .network import Network

__all__ = ["MLPClassifier", "MLPRegressor", "LogisticRegression"]

_Estimator = TypeVar("_Estimator", bound="_BaseSGD")

# scikit-learn's names for the hidden activations, and chainrule's own.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SEED_BOUND = 2**63 - 1  # seeds drawn from random_state for the initial weights and each fit's shuffling


def _refuse_masked(**arrays) -> None:
    """A numpy.ma.MaskedArray would lose its mask in the conversion: its masked entries would be read as data."""
    for name, value in arrays.items():
        if isinstance(value, np.ma.MaskedArray):
            raise TypeError(f"{name} is a numpy.ma.MaskedArray: its masked entries would be read as data; pass an "
                            f"array without the masked records, or {name}.filled(value) to choose their values")


def _network_input(X, dtype=None):
    """X as Network reads it: a CSR matrix (scipy.sparse) or a C-contiguous array, of `dtype` when given.

    Sparse X stays sparse (validate_data made it CSR, copying other formats
    as scikit-learn does); its values are copied only to change their dtype.
    """
    if issparse(X):
        return X if dtype is None or X.dtype == dtype else X.astype(dtype)
    return np.ascontiguousarray(X, dtype=dtype)


def _scipy_optimize():
    """scipy.optimize, which solver='lbfgs' needs (scipy is an optional dependency of this layer)."""
    try:
        from scipy import optimize
    except ImportError as error:  # pragma: no cover - scikit-learn itself depends on scipy
        raise ImportError("solver='lbfgs' needs scipy (scipy.optimize.minimize): pip install 'chainrule[sklearn]'") \
            from error
    return optimize


def _stochastic_solver(estimator) -> bool:
    """partial_fit's condition (scikit-learn's): an epoch-based solver; lbfgs has no partial_fit."""
    if estimator.solver not in ("adam", "sgd"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {estimator.solver} is not "
                             "stochastic.")
    return True


@dataclass
class _EpochRun:
    """One stochastic fit's state between the core's epochs (see _BaseSGD._fit_stochastic)."""

    num_records: int
    validation: tuple = None  # (X_val, y_val, w_val) with early stopping
    incremental: bool = False
    scale: float = 1.0  # _loss_scale()
    reporter: EpochProgress = None
    best_params: Network = None  # a copy at the best validation score so far
    stopped: bool = False  # by the stopping rule (or a diverged epoch), not by max_iter


class _BaseSGD(BaseEstimator):
    """What the three estimators share: parameters, input conversion, the epoch loop."""

    _parameter_constraints: dict = {
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        # np.inf: never stop early (the count of epochs without improvement never exceeds it).
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "solver": [StrOptions({"adam", "sgd", "lbfgs"})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
    }

    # scikit-learn's optimiser settings, set by the subclasses' __init__.
    _OPTIMIZER_PARAMETERS = ("solver", "alpha", "learning_rate", "power_t", "momentum", "nesterovs_momentum",
                             "beta_1", "beta_2", "epsilon", "max_fun")

    # -- what subclasses decide ------------------------------------------

    def _hidden_layers(self):
        """(sizes, chainrule activation name) of the hidden layers: those of the MLPs."""
        return _hidden_sizes(self.hidden_layer_sizes), _ACTIVATIONS[self.activation]

    def _output_and_loss(self):
        """(output activation, loss) for the targets seen at the first fit."""
        raise NotImplementedError

    def _encode_targets(self, y, first, warm, dtype, classes=None):
        """y as validated -> Y (n_samples, n_outputs) of ``dtype``; sets classes_ etc. when first.

        ``warm``: a ``fit`` that continues from the current weights (warm_start)."""
        raise NotImplementedError

    def _validation_score(self, X, y, sample_weight=None):
        raise NotImplementedError

    # -- learned state in scikit-learn's layout ---------------------------

    @property
    def coefs_(self):
        """Copies of the weights in scikit-learn's layout: ``coefs_[i]`` has shape (n_in, n_out).

        (The network's own views, ``network_.weights``, are (n_out, n_in), the
        ``z = W x + b`` layout of docs/math.md.)"""
        check_is_fitted(self, "network_")
        return [np.array(weight.T) for weight in self.network_.weights]

    @property
    def intercepts_(self):
        check_is_fitted(self, "network_")
        return [np.array(bias) for bias in self.network_.biases]

    @property
    def n_layers_(self):
        check_is_fitted(self, "network_")
        return len(self.network_.layer_sizes)

    @property
    def out_activation_(self):
        """The output activation, in scikit-learn's names ('logistic', 'softmax', 'identity')."""
        check_is_fitted(self, "network_")
        name = self.network_.activations[-1]
        return "logistic" if name == "sigmoid" else name

    # -- fitting -----------------------------------------------------------

    def _batch_size(self, num_samples):
        if self.batch_size == "auto":
            return min(200, num_samples)
        if self.batch_size > num_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          UserWarning)
        return min(self.batch_size, num_samples)

    def _validate_input(self, X, y, first):
        """(X as a C-contiguous array of the parameters' dtype, y as validated)."""
        _refuse_masked(X=X, y=y)
        # validate_data keeps float32 and float64 X as they are and converts
        # any other dtype to float64 (the first of the pair), as scikit-learn's MLP does.
        # Sparse X is trained on as CSR (the core reads it in place; other formats are copied to CSR).
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=isinstance(self, RegressorMixin), accept_sparse="csr")
        if not first:
            dtype = self.network_.dtype  # warm fits and partial_fit train the parameters there are
        elif self.dtype is not None:
            dtype = np.dtype(self.dtype)
        else:
            dtype = X.dtype
        return _network_input(X, dtype), y

    # MLPClassifier and MLPRegressor draw their initial weights as
    # scikit-learn's do; LogisticRegression keeps chainrule's initialisation.
    _sklearn_initialisation = True

    def _initialize(self, num_features, num_outputs, dtype):
        sizes, activation = self._hidden_layers()
        output, loss = self._output_and_loss()
        layer_sizes = [num_features, *sizes, num_outputs]
        if not self._sklearn_initialisation:
            seed = int(self._random_state.randint(0, _SEED_BOUND, dtype=np.int64))
            self.network_ = Network(layer_sizes, activation=activation, output=output, loss=loss, dtype=dtype,
                                    seed=seed)
        else:
            # scikit-learn's draw, from the same RandomState in the same order:
            # per layer, coefs U(-r, r) of shape (n_in, n_out) then intercepts
            # U(-r, r), r = sqrt(6 / (n_in + n_out)) (2 instead of 6 for
            # logistic hidden layers). The same random_state gives the same
            # initial weights as scikit-learn's estimator.
            self.network_ = Network(layer_sizes, activation=activation, output=output, loss=loss, dtype=dtype,
                                    seed=0)
            factor = 2.0 if activation == "sigmoid" else 6.0
            for l, (n_in, n_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
                bound = np.sqrt(factor / (n_in + n_out))
                self.network_.weights[l][...] = self._random_state.uniform(-bound, bound, (n_in, n_out)).T
                self.network_.biases[l][...] = self._random_state.uniform(-bound, bound, n_out)
        self.n_outputs_ = num_outputs
        self.n_iter_ = 0
        self.t_ = 0
        if self.solver != "lbfgs":  # as scikit-learn: no loss_curve_ nor stopping-rule state without epochs
            self._start_loss_curve()

    def _start_loss_curve(self):
        """The epochs' record and the stopping rule's state, empty: at a cold fit, or a warm one after lbfgs."""
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _refuse_early_stopping_in_partial_fit(self):
        # scikit-learn's error: partial_fit trains one epoch on the block it
        # is given and holds nothing out, so there is no validation score to
        # stop on. Raised before anything changes.
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")

    def fit(self: _Estimator, X: npt.ArrayLike, y: npt.ArrayLike,
            sample_weight: Optional[npt.ArrayLike] = None) -> _Estimator:
        """Train for up to ``max_iter`` epochs (fresh weights unless ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Converted once to a C-contiguous array of the parameters' dtype.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels (classifiers: any, or a multi-label indicator matrix) or
            targets (the regressor).
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample, scikit-learn's semantics.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            Invalid parameters or data (scikit-learn's checks and messages).
        chainrule.DivergenceError
            Training diverged (see the class's Notes).

        Examples
        --------
        >>> from chainrule.sklearn import MLPRegressor
        >>> X = np.linspace(-1, 1, 20).reshape(-1, 1)
        >>> reg = MLPRegressor(hidden_layer_sizes=(), solver="sgd", learning_rate_init=0.1, random_state=0)
        >>> reg.fit(X, 2 * X.ravel() + 1) is reg
        True
        >>> reg.n_iter_ > 0, bool(reg.score(X, 2 * X.ravel() + 1) > 0.9)
        (True, True)
        """
        self._validate_params()
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _loss_scale(self):
        """scikit-learn's gradient over chainrule's: 1, but 1/2 for the squared error.

        scikit-learn's squared loss is (y - p)^2 / 2 averaged over records and
        outputs, but its gradient is that of the loss summed over the outputs,
        (p - y) / B: half chainrule's 2 (p - y) / B whatever the outputs. Its
        reported loss is then half chainrule's MSE for one output, and that
        divided by the outputs as well for several."""
        return 0.5 if self._output_and_loss()[1] == "mse" else 1.0

    def _make_optimizer(self):
        """The optimizer of one fit (partial_fit keeps it), in scikit-learn's form.

        chainrule's loss is scikit-learn's divided by _loss_scale c: the same
        steps take lr c (SGD), alpha / c, and Adam's eps / c (Adam divides
        the moments, which scale by 1 / c, so only eps moves)."""
        c = self._loss_scale()
        if self.solver == "adam":
            return optim.Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon / c,
                              form="sklearn")
        return optim.SGD(lr=self.learning_rate_init * c, momentum=self.momentum,
                         nesterov=bool(self.nesterovs_momentum and self.momentum > 0), form="sklearn")

    def _sample_weight(self, sample_weight, X, y):
        """sample_weight as one float per record (or None), with class_weight folded in."""
        class_weight = getattr(self, "class_weight", None)
        if sample_weight is not None:
            _refuse_masked(sample_weight=sample_weight)
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if class_weight is not None and getattr(self, "_target_kind", None) != "multilabel":
            weights = compute_sample_weight(class_weight, y)
            sample_weight = weights if sample_weight is None else sample_weight * weights
        return sample_weight

    def _fit(self, X, y, incremental, classes=None, sample_weight=None):
        """fit and partial_fit: validate, initialize at the first fit, then run the solver."""
        first = not hasattr(self, "network_") or not (self.warm_start or incremental)
        X, y = self._validate_input(X, y, first)
        if first:
            self._random_state = check_random_state(self.random_state)
        Y = self._encode_targets(y, first, warm=not first and not incremental, dtype=X.dtype, classes=classes)
        if first:
            self._initialize(X.shape[1], Y.shape[1], X.dtype)
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs, but the estimator was fitted with {self.n_outputs_}")
        sample_weight = self._sample_weight(sample_weight, X, y)
        if self.solver == "lbfgs":  # full-batch: no epochs, no validation split (scikit-learn's)
            self._fit_lbfgs(X, Y, sample_weight)
            return self
        validation = None
        if self.early_stopping:  # never with incremental: partial_fit refuses it
            X, Y, sample_weight, validation = self._validation_split(X, Y, y, sample_weight)
        epochs = 1 if incremental else self.max_iter
        self._fit_stochastic(X, Y, validation, epochs, incremental, sample_weight)
        return self

    def _validation_split(self, X, Y, y, sample_weight):
        """(X, Y, sample_weight) to train on and (X_val, y_val, w_val) held out: validation_fraction of
        the records, stratified for a classifier's labels, drawn from the estimator's RandomState."""
        stratify = y if isinstance(self, ClassifierMixin) and self._target_kind != "multilabel" else None
        split = (X, Y, y) if sample_weight is None else (X, Y, y, sample_weight)
        parts = train_test_split(*split, random_state=self._random_state, test_size=self.validation_fraction,
                                 stratify=stratify)
        X, X_val, Y, _, _, y_val = parts[:6]
        w_val = None
        if sample_weight is not None:
            sample_weight, w_val = parts[6], parts[7]
        X, Y = _network_input(X), np.ascontiguousarray(Y)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small: increase validation_fraction or the sample size")
        return X, Y, sample_weight, (X_val, y_val, w_val)

    # -- solver='adam' and 'sgd': the core's epochs, scikit-learn's rule between them --
    #
    # The stopping rule is scikit-learn's, applied here after each of the
    # core's epochs rather than by the core's own `tol` rule, because: it may
    # score a held-out set (early_stopping) and keep the parameters of the
    # best score; its count and best loss carry over warm fits and partial_fit
    # calls, in scikit-learn's units of loss; and it stops once the count
    # *exceeds* n_iter_no_change, one epoch after the core's rule would
    # (docs/math.md, "Mini-batches and epochs").

    def _fit_stochastic(self, X, Y, validation, epochs, incremental, sample_weight):
        """Train ``epochs`` epochs of adam or sgd over (X, Y), stopping by scikit-learn's rule.

        ``validation``: (X_val, y_val, w_val) with early stopping, else None.
        The network trains in the core (``Network.fit``); after each epoch
        the core calls :meth:`_end_epoch`, which may stop it."""
        if not hasattr(self, "loss_curve_"):  # a warm fit after solver='lbfgs', which keeps no epochs
            self._start_loss_curve()
        self._prepare_optimizer(incremental)
        # n_iter_ counts the epochs of this call, as in scikit-learn; t_,
        # loss_curve_ and validation_scores_ go on accumulating over warm fits
        # and partial_fit calls (a cold fit resets them in _initialize).
        self.n_iter_ = 0
        run = _EpochRun(num_records=X.shape[0], validation=validation, incremental=incremental,
                        scale=self._loss_scale(),
                        reporter=EpochProgress(epochs, type(self).__name__) if self.verbose else None)
        seed = int(self._random_state.randint(0, _SEED_BOUND, dtype=np.int64))
        try:
            self.network_.fit(X, Y, epochs=epochs, batch_size=self._batch_size(X.shape[0]), shuffle=self.shuffle,
                              seed=seed, callback=functools.partial(self._end_epoch, run),
                              optimizer=self._optimizer, schedule=self._schedule(run.scale),
                              alpha=self.alpha / run.scale, sample_weight=sample_weight,
                              callback_writes_data=False)  # _end_epoch reads the validation set only
        except DivergenceError as error:
            self._end_diverged_epoch(run, error)
        finally:
            if run.reporter is not None:
                run.reporter.close()
        self._restore_best_parameters(run)
        if not incremental and not run.stopped:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)

    def _prepare_optimizer(self, incremental):
        """scikit-learn makes a new optimizer for each fit; partial_fit continues its own."""
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._make_optimizer()
            self._learning_rate = self.learning_rate_init  # 'adaptive' divides it

    def _schedule(self, scale):
        """The core's learning-rate schedule: None (constant) or a function of (epoch, lr)."""
        if self.solver == "adam" or self.learning_rate == "constant":
            return None
        if self.learning_rate == "invscaling":
            return functools.partial(self._invscaling_rate, scale)
        return functools.partial(self._adaptive_rate, scale)

    def _invscaling_rate(self, scale, epoch, lr):
        """scikit-learn's: a new optimizer starts at learning_rate_init, and each
        epoch's end sets learning_rate_init / (t_ + 1)^power_t, t_ the records
        this estimator has seen (over warm fits too)."""
        rate = self.learning_rate_init if epoch == 0 else self.learning_rate_init / (self.t_ + 1) ** self.power_t
        return rate * scale

    def _adaptive_rate(self, scale, epoch, lr):
        """'adaptive': the rate the stopping rule last set (_stop_or_adapt)."""
        return self._learning_rate * scale

    def _end_epoch(self, run, epoch, cost):
        """The core's callback after each epoch: record it, then True to go on, False to stop."""
        loss = self._sklearn_loss(cost, run.scale)
        self._record_epoch(run, loss)
        score = self._score_validation(run) if run.validation is not None else None
        if run.reporter is not None:
            run.reporter.update(self.n_iter_ - 1, loss, score)
        if run.incremental:
            return True
        self._update_no_improvement_count(run, loss, score)
        return not self._stop_or_adapt(run)

    def _sklearn_loss(self, cost, scale):
        """The core's epoch cost in scikit-learn's units (its squared error: halved, and over the outputs)."""
        loss = cost * scale
        if scale != 1.0 and self.n_outputs_ > 1:
            loss = loss / self.n_outputs_
        return loss

    def _record_epoch(self, run, loss):
        self.n_iter_ += 1
        self.t_ += run.num_records
        self.loss_curve_.append(float(loss))
        self.loss_ = float(loss)

    def _score_validation(self, run):
        """The epoch's validation score, appended to validation_scores_."""
        try:
            score = self._validation_score(*run.validation)
        except DivergenceError:  # the predictions overflowed: scikit-learn scores them nan
            score = float("nan")
        self.validation_scores_.append(score)
        return score

    def _update_no_improvement_count(self, run, loss, score):
        """scikit-learn's rule: an epoch that does not beat the best by tol counts, any other resets the count.

        With early stopping the best is the validation score (higher is
        better; its parameters are kept, to be restored at the end), else the
        training loss. A nan score counts too (in scikit-learn it resets the
        count, as nan < x is False)."""
        if run.validation is not None:
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if not score >= self.best_validation_score_ + self.tol else 0)
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                run.best_params = self.network_.copy()
        else:
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if loss > self.best_loss_ - self.tol else 0)
            self.best_loss_ = min(self.best_loss_, float(loss))

    def _stop_or_adapt(self, run):
        """True to stop: the count exceeds n_iter_no_change. 'adaptive' divides its rate by 5 and goes on instead,
        until the rate falls to 1e-6 (scikit-learn's)."""
        if not self._no_improvement_count > self.n_iter_no_change:
            return False
        if self.solver == "sgd" and self.learning_rate == "adaptive" and self._learning_rate > 1e-6:
            self._learning_rate /= 5.0
            self._no_improvement_count = 0
            if run.reporter is not None:
                run.reporter.message(f"Setting learning rate to {self._learning_rate:f}")
            return False
        run.stopped = True
        if run.reporter is not None:
            what = "Validation score" if run.validation is not None else "Training loss"
            run.reporter.message(f"{what} did not improve more than tol={self.tol:f} for "
                                 f"{self.n_iter_no_change} consecutive epochs. Stopping.")
        return True

    def _end_diverged_epoch(self, run, error):
        """A step would have made the cost or a parameter non-finite (the core raised DivergenceError).

        Without early stopping the error propagates: the parameters are
        those from before the offending step (docs/math.md, "SGD"), finite
        but not a trained model. With early stopping there is a better answer
        once an epoch has been validated: scikit-learn's fit then returns the
        parameters of the best validation score with the diverged epochs
        scored nan. We do the same for the diverged epoch (loss and score nan;
        t_ counts completed epochs only), stop there instead of running on to
        max_iter, and say so."""
        if run.validation is None or run.best_params is None:
            raise error
        self.n_iter_ += 1
        self.loss_curve_.append(float("nan"))
        self.validation_scores_.append(float("nan"))
        if run.reporter is not None:
            run.reporter.message(f"Training diverged in epoch {self.n_iter_}. Stopping.")
        run.stopped = True
        warnings.warn(f"Training diverged in epoch {self.n_iter_} ({error}); stopped there and restored the "
                      f"parameters of the best validation score, {self.best_validation_score_:g}.",
                      ConvergenceWarning)

    def _restore_best_parameters(self, run):
        """With early stopping: the parameters of the best validation score."""
        if run.validation is not None and run.best_params is not None:
            network, best = self.network_, run.best_params
            for mine, kept in zip(network.weights + network.biases, best.weights + best.biases):
                mine[...] = kept

    # -- solver='lbfgs': scipy's L-BFGS-B over the flat parameter buffer ----

    def _fit_lbfgs(self, X, Y, sample_weight):
        """Minimize the full-data cost with scipy's L-BFGS-B, as scikit-learn's _fit_lbfgs does.

        Each evaluation copies L-BFGS's point (float64) into the network's
        flat parameter buffer (rounded to float32 for float32 networks) and
        calls the core once for the cost and its gradient over all of X, read
        in place (docs/math.md, "L-BFGS: the full-batch cost and its gradient in one call")."""
        optimize = _scipy_optimize()
        network = self.network_
        params = network.params  # the flat buffer [W_1, b_1, ...]: weights and biases are views of it
        scale = self._loss_scale()
        alpha = self.alpha / scale
        weights = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=network.dtype)
        divisor = X.shape[0] if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))

        def cost_and_gradient(x):
            params[...] = x
            cost, gradient = network.cost_and_gradient(X, Y, weights, alpha)
            return cost * scale, gradient.astype(np.float64) * scale

        reporter = EpochProgress(self.max_iter, type(self).__name__) if self.verbose else None
        iterations = [0]

        def report(intermediate_result):
            reporter.update(iterations[0], self._lbfgs_loss(intermediate_result.fun, scale, divisor))
            iterations[0] += 1

        x0 = params.astype(np.float64)
        try:
            result = optimize.minimize(cost_and_gradient, x0, method="L-BFGS-B", jac=True,
                                       callback=report if reporter is not None else None,
                                       options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        except DivergenceError:
            params[...] = x0  # the parameters the fit started from, as they were
            raise
        finally:
            if reporter is not None:
                reporter.close()
        params[...] = result.x
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = self._lbfgs_loss(float(result.fun), scale, divisor)
        if result.status != 0:
            message = result.message.decode() if isinstance(result.message, bytes) else str(result.message)
            advice = (f" Increase the number of iterations (max_iter={self.max_iter})."
                      if self.n_iter_ == self.max_iter else "")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status={result.status}): "
                          f"{message}.{advice} You might also want to scale the data (e.g. StandardScaler).",
                          ConvergenceWarning)

    def _lbfgs_loss(self, objective, scale, divisor):
        """scikit-learn's loss_ for lbfgs from the objective minimized.

        For the squared error with several outputs, scikit-learn's lbfgs
        minimizes a loss whose data term is averaged over the outputs while
        its gradient is that of the sum over them; we minimize the objective
        of that gradient (data term summed over the outputs, so that value
        and gradient agree, which L-BFGS's line search relies on) and report
        scikit-learn's value: the data term divided by the outputs, plus the
        penalty."""
        if scale == 1.0 or self.n_outputs_ == 1:
            return float(objective)
        penalty = 0.5 * self.alpha * sum(float(np.dot(w.ravel(), w.ravel())) for w in self.network_.weights)
        penalty /= divisor
        return float((objective - penalty) / self.n_outputs_ + penalty)

    def _forward(self, X):
        check_is_fitted(self, "network_")
        _refuse_masked(X=X)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), accept_sparse="csr")
        return self.network_.predict(_network_input(X, self.network_.dtype))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseSGD):
    """A multi-layer perceptron classifier: scikit-learn's MLPClassifier, trained by chainrule's core.

    Binary targets train one sigmoid output with binary cross-entropy;
    multi-label indicator targets one sigmoid output per label, also with BCE;
    multi-class targets one softmax output per class with categorical
    cross-entropy. Labels may be strings or integers.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
        Widths of the hidden layers; ``()`` for none.
    activation : {'relu', 'tanh', 'logistic', 'sigmoid', 'identity'}, default='relu'
        Activation of the hidden layers ('logistic' and 'sigmoid' are the same).
    solver : {'adam', 'sgd', 'lbfgs'}, default='adam'
        scikit-learn's optimisers, in its form (docs/math.md, "Optimizers"):
        from the same random_state, records in order, the steps are
        scikit-learn's to rounding. 'lbfgs' minimizes the full-data cost
        with scipy's L-BFGS-B (needs scipy), chainrule computing the cost and
        its gradient; it takes scikit-learn's iterates, has no epochs (no
        ``loss_curve_``, ``early_stopping`` ignored) and no ``partial_fit``
        (docs/math.md, "L-BFGS").
    alpha : float, default=1e-4
        The L2 penalty on the weights, as scikit-learn's.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        The rate of solver='sgd': constant, ``learning_rate_init / (t + 1) **
        power_t`` with t the records seen, or divided by 5 each time the
        stopping rule fires (training stops below 1e-6).
    learning_rate_init : float, default=0.001
        The initial learning rate.
    power_t : float, default=0.5
        The exponent of 'invscaling'.
    momentum : float, default=0.9
        solver='sgd''s momentum (scikit-learn's velocity form).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum, with solver='sgd' and momentum > 0.
    beta_1, beta_2 : float, default=0.9, 0.999
        solver='adam''s decay rates of the moments.
    epsilon : float, default=1e-8
        solver='adam''s epsilon (scikit-learn's placement).
    class_weight : dict, 'balanced' or None
        Weights of the classes, multiplied into ``sample_weight`` (scikit-learn's
        MLP has no such parameter; its linear models' meaning).
    batch_size : int or 'auto', default='auto'
        Records per step; 'auto' is ``min(200, n_samples)``.
    max_iter : int, default=200
        Epochs of one ``fit``; with 'lbfgs', its iterations.
    max_fun : int, default=15000
        'lbfgs' only: the most evaluations of the cost and gradient (at
        least 1); the fit stops, warning (``ConvergenceWarning``), once
        scipy exceeds it.
    shuffle : bool, default=True
        Visit the records in a new order each epoch.
    random_state : int, RandomState or None
        Seeds the initial weights (drawn as scikit-learn draws them: the same
        random_state gives the same initial weights), the shuffling (chainrule's
        own) and the validation split.
    tol, n_iter_no_change : float, int or np.inf
        With 'lbfgs', ``tol`` is scipy's gtol (stop once every projected
        gradient is within it). Otherwise:
        stop once the training loss (or, with ``early_stopping``, the
        validation score) has not improved by ``tol`` for more than
        ``n_iter_no_change`` epochs in a row, as scikit-learn does;
        ``n_iter_no_change=np.inf`` never stops early.
    verbose : bool
        Report each epoch's loss (and validation score): a tqdm bar where
        tqdm is installed, scikit-learn's lines otherwise.
    warm_start : bool
        ``fit`` continues from the current weights instead of starting anew.
    early_stopping : bool
        Hold out ``validation_fraction`` of the data (stratified), score it
        after each epoch, stop on the rule above and restore the parameters of
        the best validation score. ``partial_fit`` refuses it (ValueError), as
        scikit-learn does: one epoch on a block has nothing held out.
    validation_fraction : float, default=0.1
        The share of the data held out with ``early_stopping``.
    dtype : {'float64', 'float32'} or None, default=None
        The dtype of the network's parameters, to which every X and y is
        converted. None takes it from X at the first fit, as scikit-learn
        does: float32 X trains float32 parameters, float64 X float64, any
        other dtype (integers, float16, lists) float64.

    Attributes
    ----------
    n_iter_ is the number of epochs of the last ``fit`` or ``partial_fit``
    call (1 after ``partial_fit``; with 'lbfgs', its iterations), as in
    scikit-learn; ``loss_`` the last epoch's loss (with 'lbfgs', the final
    cost, penalty included, in scikit-learn's units); ``t_`` (records seen)
    and ``loss_curve_`` keep accumulating over warm fits and ``partial_fit``
    calls. Also classes_, n_features_in_, feature_names_in_, n_outputs_,
    best_loss_, validation_scores_, best_validation_score_,
    network_ (the trained :class:`chainrule.Network`), and, as copies in
    scikit-learn's layout, coefs_ and intercepts_.

    Notes
    -----
    Divergence (a learning rate too large, inputs not scaled): chainrule's
    core stops before a step that would make the cost or a parameter
    non-finite (docs/math.md, "SGD"). What ``fit`` does then:

    - With 'lbfgs', a cost or gradient that overflows during the search
      raises :class:`chainrule.DivergenceError`, the parameters being those
      the fit started from.
    - Without ``early_stopping`` (and in ``partial_fit``) it raises
      :class:`chainrule.DivergenceError`, a ``FloatingPointError`` naming the
      epoch, the batch and the remedy; the parameters are those from before
      that step. scikit-learn runs on to ``max_iter`` and then raises
      ``ValueError("Solver produced non-finite parameter weights ...")``.
      We raise at once because nothing trained past that point is a model,
      and we keep the core's exception, which says what happened, so code
      that catches scikit-learn's ``ValueError`` there must catch
      ``DivergenceError`` (or ``FloatingPointError``) instead.
    - With ``early_stopping``, once an epoch has been validated, it does
      what scikit-learn's does (its test_mlp_diverging_loss): it returns the
      parameters of the best validation score, and the diverged epoch counts
      in ``n_iter_`` with a nan loss and a nan validation score. Unlike
      scikit-learn it stops at that epoch rather than running on to
      ``max_iter``, and warns (``ConvergenceWarning``). An epoch whose
      validation predictions overflow is scored nan, as scikit-learn scores
      non-finite predictions, and counts as no improvement. If the very first
      epoch diverges there is nothing validated to return and it raises
      ``DivergenceError`` (scikit-learn would return the initial weights).

    Examples
    --------
    >>> from chainrule.sklearn import MLPClassifier
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5)
    >>> y = np.array(["no", "yes", "yes", "no"] * 5)  # XOR, string labels
    >>> clf = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.5, max_iter=500,
    ...                     random_state=0).fit(X, y)
    >>> clf.predict(X[:4]).tolist(), clf.classes_.tolist()
    (['no', 'yes', 'yes', 'no'], ['no', 'yes'])
    >>> clf.network_
    Network([2, 8, 1], activation='relu', output='sigmoid', loss='bce', dtype='float64')
    """

    _parameter_constraints: dict = {
        **_BaseSGD._parameter_constraints,
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
                 alpha: float = 0.0001, batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: float = 10, max_fun: int = 15000,
                 class_weight: Any = None, dtype: Optional[str] = None) -> None:
        self.solver = solver
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.class_weight = class_weight
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _output_and_loss(self):
        return ("softmax", "cce") if self._target_kind == "multiclass" else ("sigmoid", "bce")

    def _encode_targets(self, y, first, warm, dtype, classes=None):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            if type_of_target(y) == "multilabel-indicator":
                self._target_kind = "multilabel"
                self.classes_ = np.arange(y.shape[1])
            else:
                self.classes_ = unique_labels(y) if classes is None else unique_labels(np.asarray(classes))
                self._target_kind = "multiclass" if len(self.classes_) > 2 else "binary"
        if self._target_kind == "multilabel":
            if y.ndim != 2 or y.shape[1] != len(self.classes_):
                raise ValueError(f"y must be a multi-label indicator matrix with {len(self.classes_)} columns")
            return np.ascontiguousarray(y, dtype=dtype)
        if y.ndim != 1:
            raise ValueError("y holds several labels per record, but the estimator was fitted on one label each")
        if warm and not np.array_equal(unique_labels(y), self.classes_):
            # scikit-learn's rule and message: a warm fit continues the same
            # problem, so y must hold exactly the classes of the previous fit
            # (partial_fit may see some of them in a block; it is not checked here).
            raise ValueError("warm_start can only be used where `y` has the same classes as in the previous call "
                             f"to fit. Previously got {self.classes_}, `y` has {unique_labels(y)}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not in classes {self.classes_.tolist()}: {unknown[:5].tolist()}")
        index = np.searchsorted(self.classes_, y)
        if self._target_kind == "binary":  # one sigmoid output: P(classes_[1]); one class alone: all 0
            return np.ascontiguousarray((index == 1)[:, None], dtype=dtype)
        Y = np.zeros((len(y), len(self.classes_)), dtype=dtype)  # one-hot for the softmax
        Y[np.arange(len(y)), index] = 1
        return Y

    def _labels(self, probabilities):
        if self._target_kind == "multilabel":
            return (probabilities > 0.5).astype(int)
        if self._target_kind == "binary":
            # One sigmoid output, P(classes_[1]). Fitted on a single class,
            # every record gets that class: index 0 once per record, so the
            # result has one label per record like any other prediction.
            if len(self.classes_) == 1:
                return self.classes_[np.zeros(len(probabilities), dtype=np.intp)]
            return self.classes_[(probabilities[:, 0] > 0.5).astype(np.intp)]
        return self.classes_[np.argmax(probabilities, axis=1)]

    def _validation_score(self, X, y, sample_weight=None):
        return float(accuracy_score(y, self._labels(self.network_.predict(X)), sample_weight=sample_weight))

    @available_if(_stochastic_solver)
    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, classes: Optional[npt.ArrayLike] = None,
                    sample_weight: Optional[npt.ArrayLike] = None) -> "MLPClassifier":
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call.

        Refused with ``early_stopping=True``, as in scikit-learn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One block of the data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Its labels.
        classes : array-like, optional
            All the labels, on the first call (later: None, or the same).
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample.

        Returns
        -------
        self
            The estimator, trained one more epoch.

        Raises
        ------
        ValueError
            ``classes`` missing on the first call or changed later, a label
            not in ``classes``, ``early_stopping=True``, bad parameters.
        chainrule.DivergenceError
            The epoch diverged; the parameters are those before the step.

        Examples
        --------
        >>> from chainrule.sklearn import MLPClassifier
        >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
        >>> clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
        >>> for block in (slice(0, 2), slice(2, 4)):
        ...     _ = clf.partial_fit(X[block], y[block], classes=[0, 1])
        >>> clf.n_iter_, clf.t_, len(clf.loss_curve_)
        (1, 4, 2)
        """
        if not hasattr(self, "classes_"):
            self._validate_params()
        self._refuse_early_stopping_in_partial_fit()
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(unique_labels(np.asarray(classes)), self.classes_):
            raise ValueError(f"`classes={list(classes)}` is not the same as on the first call to partial_fit, "
                             f"which was {self.classes_.tolist()}")
        first = not hasattr(self, "network_")
        if first:
            return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        """The predicted labels (an indicator matrix for multi-label targets).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples.

        Returns
        -------
        ndarray of shape (n_samples,), or (n_samples, n_labels)
            Labels from ``classes_``; 0/1 columns for multi-label targets.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            ``X`` has the wrong number of features or non-finite values.

        Examples
        --------
        >>> from chainrule.sklearn import MLPClassifier
        >>> X, Y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[1, 0], [1, 1], [0, 1], [0, 1]])
        >>> clf = MLPClassifier(hidden_layer_sizes=(), solver="sgd", learning_rate_init=0.5, max_iter=300,
        ...                     random_state=0).fit(X, Y)  # two labels per sample
        >>> clf.predict(X).shape
        (4, 2)
        """
        return self._labels(self._forward(X))

    def predict_proba(self, X: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            In the parameters' dtype; rows sum to 1 except for multi-label
            targets (one probability per label).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            ``X`` has the wrong number of features or non-finite values.

        Examples
        --------
        >>> from chainrule.sklearn import MLPClassifier
        >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array(["a", "b", "c", "c"])
        >>> clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, y, classes=["a", "b", "c"])
        >>> P = clf.predict_proba(X)
        >>> P.shape, bool(np.allclose(P.sum(axis=1), 1))
        ((4, 3), True)
        """
        output = self._forward(X)
        if self._target_kind == "binary":
            return np.hstack([1 - output, output]) if len(self.classes_) == 2 else np.ones_like(output)
        return output

    def predict_log_proba(self, X: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """The logarithm of :meth:`predict_proba` (``-inf`` where a probability is 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            ``log(predict_proba(X))``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            As for :meth:`predict_proba`.

        Examples
        --------
        >>> from chainrule.sklearn import MLPClassifier
        >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
        >>> clf = MLPClassifier(hidden_layer_sizes=(), random_state=0).partial_fit(X, y, classes=[0, 1])
        >>> bool(np.allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X)))
        True
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class LogisticRegression(MLPClassifier):
    """The seeds' single neuron: no hidden layer, sigmoid + BCE, trained by SGD.

    With more than two classes it is multinomial (softmax + categorical
    cross-entropy); with indicator targets, one sigmoid per label. Not
    scikit-learn's ``LogisticRegression``: by default plain SGD at 0.1, no
    penalty (solver='sgd', momentum=0, alpha=0), with chainrule's
    initialisation; its parameters (solvers, alpha, sample_weight, and what
    a diverging fit does) are otherwise those of :class:`MLPClassifier`.
    ``solver='lbfgs'`` with ``alpha=1/C`` minimizes the objective of
    scikit-learn's ``LogisticRegression(C=C)`` (mean loss plus
    ``||W||^2 / (2 C n)``; multinomial for several classes).
    ``coef_`` (n_outputs, n_features) and ``intercept_`` (n_outputs,) have
    scikit-learn's layout.

    Parameters
    ----------
    solver : {'sgd', 'adam', 'lbfgs'}, default='sgd'
        As :class:`MLPClassifier`'s.
    alpha : float, default=0.0
        The L2 penalty on the weights.
    learning_rate_init : float, default=0.1
        The initial learning rate.
    learning_rate, power_t, momentum, nesterovs_momentum, beta_1, beta_2, epsilon
        As :class:`MLPClassifier`'s (momentum 0 and no Nesterov by default).
    batch_size, max_iter, shuffle, random_state, tol, verbose, warm_start
        As :class:`MLPClassifier`'s.
    early_stopping, validation_fraction, n_iter_no_change, max_fun, dtype
        As :class:`MLPClassifier`'s.

    Examples
    --------
    >>> from chainrule.sklearn import LogisticRegression
    >>> X = np.array([[-2.0], [-1.0], [-0.5], [0.5], [1.0], [2.0]])
    >>> y = np.array([0, 0, 1, 0, 1, 1])
    >>> model = LogisticRegression(max_iter=1000, random_state=0).fit(X, y)
    >>> model.predict([[-3.0], [3.0]]).tolist(), model.coef_.shape, model.intercept_.shape
    ([0, 1], (1, 1), (1,))
    """

    _sklearn_initialisation = False  # chainrule's Glorot-uniform, from the seed (docs/math.md)
    _parameter_constraints: dict = dict(_BaseSGD._parameter_constraints)

    def __init__(self, *, solver: str = "sgd", alpha: float = 0.0, learning_rate: str = "constant",
                 learning_rate_init: float = 0.1, power_t: float = 0.5, momentum: float = 0.0,
                 nesterovs_momentum: bool = False, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 batch_size: Any = "auto", max_iter: int = 200, shuffle: bool = True, random_state: Any = None,
                 tol: float = 1e-4, verbose: bool = False, warm_start: bool = False, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: float = 10, max_fun: int = 15000,
                 dtype: Optional[str] = None) -> None:
        self.solver = solver
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _hidden_layers(self):
        return [], "sigmoid"

    @property
    def coef_(self):
        check_is_fitted(self, "network_")
        return np.array(self.network_.weights[0])

    @property
    def intercept_(self):
        check_is_fitted(self, "network_")
        return np.array(self.network_.biases[0])


class MLPRegressor(RegressorMixin, _BaseSGD):
    """A multi-layer perceptron regressor: scikit-learn's MLPRegressor, trained by chainrule's core.

    Parameters (and what a diverging fit does) are those of :class:`MLPClassifier`
    (no class_weight). With ``early_stopping`` the validation score is R^2.
    Targets of shape (n_samples,) give predictions of that shape;
    (n_samples, n_outputs) one output per column. The steps are
    scikit-learn's (its gradient is half chainrule's MSE gradient: this layer
    scales the rate, alpha and eps to match); ``loss_curve_`` is
    scikit-learn's squared loss (halved, divided by the outputs), except
    that with several outputs and ``alpha`` its penalty term is not divided
    by the outputs as scikit-learn's is.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate
        As :class:`MLPClassifier`'s.
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol
        As :class:`MLPClassifier`'s.
    verbose, warm_start, momentum, nesterovs_momentum, early_stopping
        As :class:`MLPClassifier`'s.
    validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun, dtype
        As :class:`MLPClassifier`'s.

    Examples
    --------
    >>> from chainrule.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 20).reshape(-1, 1)
    >>> Y = np.hstack([X, -X])  # two outputs
    >>> reg = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", solver="sgd", learning_rate_init=0.1,
    ...                    random_state=0).fit(X, Y)
    >>> reg.predict(X).shape, reg.network_.layer_sizes
    ((20, 2), (1, 8, 2))
    """

    _parameter_constraints: dict = {k: v for k, v in MLPClassifier._parameter_constraints.items()
                                    if k != "class_weight"}

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
                 alpha: float = 0.0001, batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: float = 10, max_fun: int = 15000,
                 dtype: Optional[str] = None) -> None:
        self.solver = solver
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _output_and_loss(self):
        return "identity", "mse"

    def _encode_targets(self, y, first, warm, dtype, classes=None):
        if first:
            self._y_ndim = y.ndim
        return np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)

    def _validation_score(self, X, y, sample_weight=None):
        return float(r2_score(y, self._shaped(self.network_.predict(X)), sample_weight=sample_weight))

    def _shaped(self, output):
        return output.ravel() if self._y_ndim == 1 else output

    @available_if(_stochastic_solver)
    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike,
                    sample_weight: Optional[npt.ArrayLike] = None) -> "MLPRegressor":
        """One epoch over (X, y); refused with ``early_stopping=True``, as in scikit-learn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One block of the data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets.
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample.

        Returns
        -------
        self
            The estimator, trained one more epoch.

        Raises
        ------
        ValueError
            ``early_stopping=True``, bad parameters or data.
        chainrule.DivergenceError
            The epoch diverged; the parameters are those before the step.

        Examples
        --------
        >>> from chainrule.sklearn import MLPRegressor
        >>> X = np.linspace(-1, 1, 8).reshape(-1, 1)
        >>> reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
        >>> for epoch in range(3):
        ...     _ = reg.partial_fit(X, 3 * X.ravel())
        >>> reg.t_, len(reg.loss_curve_)
        (24, 3)
        """
        if not hasattr(self, "network_"):
            self._validate_params()
        self._refuse_early_stopping_in_partial_fit()
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """The predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The shape of the targets ``fit`` saw, in the parameters' dtype.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ValueError
            ``X`` has the wrong number of features or non-finite values.

        Examples
        --------
        >>> from chainrule.sklearn import MLPRegressor
        >>> X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(-1, 1)
        >>> reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, X.ravel())  # one epoch
        >>> reg.predict(X).shape, reg.predict(X).dtype
        ((8,), dtype('float32'))
        """
        return self._shaped(self._forward(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _hidden_sizes(hidden_layer_sizes):
    sizes = [hidden_layer_sizes] if isinstance(hidden_layer_sizes, Integral) else list(hidden_layer_sizes)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
            raise ValueError(f"hidden_layer_sizes must hold positive integers, got {hidden_layer_sizes!r}")
    return [int(size) for size in sizes]
