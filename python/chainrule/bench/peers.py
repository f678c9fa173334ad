"""Every implementation behind the same four methods, so run.py can treat them alike.

    model = make(name, workload, weights, biases)   # from the given initial parameters
    costs = model.fit(X, Y, epochs, lr, batch_size) # records in order; one cost per epoch
    A_L   = model.predict(X)                        # (B, n_L)
    weights, biases = model.parameters()            # copies, docs/math.md layout

The dtype is the dtype of the initial parameters; X and Y must be C-contiguous
arrays of it, Y of shape (B, n_L). torch and scikit-learn are imported only
when asked for, so a missing one costs nothing; `is_installed` tells.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .numpy_mlp import NumpyMLP

IMPLEMENTATIONS = ("chainrule", "numpy", "torch", "sklearn")
_MODULES = {"chainrule": "chainrule", "numpy": "numpy", "torch": "torch", "sklearn": "sklearn"}


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def make(name: str, workload, weights, biases):
    constructors = {"chainrule": ChainruleModel, "numpy": NumpyModel, "torch": TorchModel, "sklearn": SklearnModel}
    return constructors[name](workload, weights, biases)


def set_num_threads(name: str, num_threads: int) -> dict:
    """Set the library's own thread count where it has one (the BLAS ones read the environment).

    Returns what was done, for the report.
    """
    if name == "chainrule":
        import chainrule
        setter = getattr(chainrule, "set_num_threads", None)
        if setter is not None:
            setter(num_threads)
        return {"chainrule_set_num_threads": setter is not None, "chainrule_build": chainrule_build()}
    if name == "torch":
        import torch
        torch.set_num_threads(num_threads)
        return {"torch_num_threads": torch.get_num_threads()}
    return {}


def chainrule_build() -> str:
    """The version and a hash of the compiled core: tells whether chainrule was reinstalled mid-run."""
    import hashlib
    import chainrule
    core = Path(chainrule._core.__file__)
    return f"{chainrule.__version__} {core.name} sha256:{hashlib.sha256(core.read_bytes()).hexdigest()[:12]}"


def openblas_cores() -> dict:
    """The kernel set ("Haswell", "SkylakeX", ...) each loaded OpenBLAS runs, chainrule's (the wheel's
    scipy-openblas32) and NumPy's own copy, None where it cannot be read: OpenBLAS picks one per CPU
    when it loads, unless OPENBLAS_CORETYPE names one, and the GEMM ceiling depends on which."""
    import ctypes
    import glob
    import os

    def ask(paths, functions):
        for path in paths:
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            for function in functions:
                corename = getattr(library, function, None)
                if corename is not None:
                    corename.restype = ctypes.c_char_p
                    return corename().decode()
        return None

    cores = {"chainrule": None, "numpy": None}
    try:
        import chainrule  # noqa: F401  (loads its OpenBLAS the way a user's import does)
        import scipy_openblas32
        cores["chainrule"] = ask([os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))],
                                 ["scipy_openblas_get_corename"])
    except (ImportError, IndexError, OSError):
        pass
    numpy_libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    cores["numpy"] = ask(sorted(glob.glob(os.path.join(numpy_libs, "lib*openblas*"))),
                         ["scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                          "openblas_get_corename"])
    return cores


# -- chainrule ------------------------------------------------------------------------


class ChainruleModel:
    def __init__(self, workload, weights, biases):
        import chainrule
        self.network = chainrule.Network(list(workload.layer_sizes), activation=workload.hidden,
                                         output=workload.output, loss=workload.loss,
                                         dtype=weights[0].dtype, seed=0)
        for view, value in zip(self.network.weights, weights):
            view[...] = value
        for view, value in zip(self.network.biases, biases):
            view[...] = value
        # The user's own call, with no adapter layer in between (the latency is measured through it).
        self.predict = self.network.predict

    def fit(self, X, Y, epochs, lr, batch_size):
        return np.asarray(self.network.fit(X, Y, epochs=epochs, lr=lr, batch_size=batch_size,
                                           shuffle=False, seed=0))

    def parameters(self):
        return [w.copy() for w in self.network.weights], [b.copy() for b in self.network.biases]


# -- NumPy (numpy_mlp.py) --------------------------------------------------------


class NumpyModel(NumpyMLP):
    def __init__(self, workload, weights, biases):
        super().__init__(weights, biases, workload.activations, workload.loss)

    def parameters(self):
        return [w.copy() for w in self.weights], [b.copy() for b in self.biases]


# -- PyTorch ----------------------------------------------------------------------------


class TorchModel:
    """nn.Sequential of Linear layers and activations, trained the way a torch user would.

    The model ends with the logits Z_L; the output activation is applied by
    predict, and BCE is taken from the logits (binary_cross_entropy_with_logits).
    Both losses are summed over the outputs and averaged over the records.
    """

    def __init__(self, workload, weights, biases):
        import torch
        self.torch = torch
        modules = {"sigmoid": torch.nn.Sigmoid, "identity": torch.nn.Identity, "tanh": torch.nn.Tanh,
                   "relu": torch.nn.ReLU}
        layers = []
        for layer, (weight, bias) in enumerate(zip(weights, biases)):
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.from_numpy(weight).dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight))   # same (n_l, n_{l-1}) layout
                linear.bias.copy_(torch.from_numpy(bias))
            layers.append(linear)
            if layer < len(weights) - 1:
                layers.append(modules[workload.hidden]())
        self.model = torch.nn.Sequential(*layers)
        self.output = modules[workload.output]()
        self.loss = workload.loss

    def _cost(self, logits, y):
        functional = self.torch.nn.functional
        if self.loss == "bce":
            return functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") / len(y)
        return functional.mse_loss(self.output(logits), y, reduction="sum") / len(y)

    def fit(self, X, Y, epochs, lr, batch_size):
        X, Y = self.torch.from_numpy(X), self.torch.from_numpy(Y)
        optimizer = self.torch.optim.SGD(self.model.parameters(), lr=lr)
        costs = []
        for _ in range(epochs):
            total = 0.0
            for start in range(0, len(X), batch_size):
                x, y = X[start:start + batch_size], Y[start:start + batch_size]
                optimizer.zero_grad()
                cost = self._cost(self.model(x), y)
                cost.backward()
                optimizer.step()
                total += cost.item() * len(x)
            costs.append(total / len(X))
        return np.array(costs)

    def predict(self, X):
        with self.torch.inference_mode():
            return self.output(self.model(self.torch.from_numpy(X))).numpy()

    def parameters(self):
        linears = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        return ([m.weight.detach().numpy().copy() for m in linears],
                [m.bias.detach().numpy().copy() for m in linears])


# -- scikit-learn -----------------------------------------------------------------------


class SklearnModel:
    """MLPClassifier (sigmoid output + BCE) or MLPRegressor (identity output + MSE), plain SGD.

    scikit-learn's conventions, and what this adapter does about them:
    - coefs_[l] is W_l^T (n_{l-1}, n_l);
    - its BCE is docs/math.md's (mean over records of the sum over outputs);
    - its squared loss is ((y - p)**2).mean() / 2, also averaged over the outputs,
      so the reported cost is docs/math.md's / (2 n_L); but the gradient it applies is
      A^T (p - y) / B, docs/math.md's / 2 whatever n_L: the learning rate is doubled so
      the update is docs/math.md's;
    - partial_fit runs one epoch (in order with shuffle=False), so fit calls it once
      per epoch; the first partial_fit (one record) only builds the estimator, whose
      parameters are then overwritten in place.
    """

    _ACTIVATIONS = {"sigmoid": "logistic", "identity": "identity", "tanh": "tanh", "relu": "relu"}

    def __init__(self, workload, weights, biases):
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        if workload.loss == "bce" and workload.output == "sigmoid":
            estimator, self.cost_scale, self.lr_scale = MLPClassifier, 1.0, 1.0
        elif workload.loss == "mse" and workload.output == "identity":
            estimator, self.cost_scale, self.lr_scale = MLPRegressor, 2.0 * workload.num_outputs, 2.0
        else:
            raise NotImplementedError(f"scikit-learn has no {workload.output} output with {workload.loss}")
        self.is_classifier = estimator is MLPClassifier
        # The optimizer is built by the first partial_fit and keeps its learning rate: set it now.
        self.lr = workload.lr
        self.estimator = estimator(hidden_layer_sizes=workload.layer_sizes[1:-1],
                                   activation=self._ACTIVATIONS[workload.hidden], solver="sgd", alpha=0.0,
                                   batch_size=1, learning_rate="constant",
                                   learning_rate_init=workload.lr * self.lr_scale,
                                   momentum=0.0, nesterovs_momentum=False, shuffle=False,
                                   early_stopping=False, n_iter_no_change=2**31 - 1, random_state=0)
        x = np.zeros((1, weights[0].shape[1]), dtype=weights[0].dtype)
        y = np.zeros((1, workload.num_outputs), dtype=weights[0].dtype)
        if self.is_classifier and workload.num_outputs == 1:
            self.estimator.partial_fit(x, y[:, 0], classes=np.array([0.0, 1.0]))
        elif self.is_classifier:
            y[0, 0] = 1.0  # a multi-label indicator row, so partial_fit sees 'multilabel-indicator'
            self.estimator.partial_fit(x, y, classes=np.arange(workload.num_outputs))
        else:
            self.estimator.partial_fit(x, y[:, 0] if workload.num_outputs == 1 else y)
        for coef, intercept, weight, bias in zip(self.estimator.coefs_, self.estimator.intercepts_,
                                                 weights, biases):
            coef[...] = weight.T
            intercept[...] = bias

    def _targets(self, Y):
        return Y[:, 0] if Y.shape[1] == 1 else Y

    def fit(self, X, Y, epochs, lr, batch_size):
        if lr != self.lr:
            raise ValueError(f"this adapter trains at the workload's lr={self.lr}, got lr={lr}")
        self.estimator.set_params(batch_size=batch_size)
        y = self._targets(Y)
        costs = []
        for _ in range(epochs):
            self.estimator.partial_fit(X, y)
            costs.append(self.estimator.loss_ * self.cost_scale)
        return np.array(costs)

    def predict(self, X):
        if not self.is_classifier:
            return self.estimator.predict(X).reshape(len(X), -1)
        probabilities = self.estimator.predict_proba(X)
        return probabilities[:, 1:] if self.estimator.n_outputs_ == 1 else probabilities

    def parameters(self):
        return ([c.T.copy() for c in self.estimator.coefs_],
                [i.copy() for i in self.estimator.intercepts_])
