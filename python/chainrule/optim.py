"""Optimizers and learning-rate schedules for :meth:`chainrule.Network.fit`.

An optimizer holds its hyperparameters and, like torch.optim's, its state
(velocities or moments, the step count) together with the rest of the
training run (the shuffling stream, the schedule's and the stopping rule's
values). Passing the same optimizer to several ``fit`` calls continues one
run: ``fit(epochs=a)`` then ``fit(epochs=b)`` equals ``fit(epochs=a + b)``
bit for bit. The update rules are written in docs/math.md ("Optimizers");
every rule runs in the C++ core as one fused loop over the parameters::

    net.fit(X, y, epochs=20, optimizer=cr.optim.Adam(lr=1e-3), schedule=cr.optim.Cosine(t_max=20))

``form="torch"`` (the default) follows torch.optim's formulas;
``form="sklearn"`` follows scikit-learn's optimizer classes
(``sklearn.neural_network._stochastic_optimizers``), whose SGD velocity
includes the learning rate and whose Adam adds eps outside the bias
correction.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Schedule", "Constant", "InvScaling", "Adaptive", "StepDecay",
           "Cosine"]

_STATES = {"float32": _core.TrainingStateFloat32, "float64": _core.TrainingStateFloat64}


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def _form(form) -> str:
    if form not in ("torch", "sklearn"):
        raise ValueError(f"form must be 'torch' or 'sklearn', got {form!r}")
    return form


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class Optimizer:
    """The base of :class:`SGD`, :class:`Adam` and :class:`AdamW`: settings and a run's state.

    The values of the settings are checked by the core when ``fit`` runs
    (each error names the setting, and neither the network nor the
    optimizer changes); their types here. Construct one of the subclasses.

    Parameters
    ----------
    lr : float
        The learning rate.
    momentum, nesterov, weight_decay, betas, eps, amsgrad, form
        The settings of the subclasses (see each).

    Raises
    ------
    TypeError
        A setting of the wrong type (``betas`` not a pair, a flag not a bool).
    ValueError
        ``form`` is neither 'torch' nor 'sklearn'.

    Examples
    --------
    >>> opt = cr.optim.SGD(lr=0.1, momentum=0.9)
    >>> isinstance(opt, cr.optim.Optimizer), opt.steps, opt.epochs
    (True, 0, 0)
    """

    _kind = "sgd"

    def __init__(self, lr: float, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 betas: Union[Tuple[float, float], Sequence[float]] = (0.9, 0.999), eps: float = 1e-8,
                 amsgrad: bool = False, form: str = "torch") -> None:
        self.lr = _real("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        self._settings = {"kind": self._kind, "form": _form(form), "momentum": _real("momentum", momentum),
                          "nesterov": _flag("nesterov", nesterov),
                          "weight_decay": _real("weight_decay", weight_decay),
                          "beta1": _real("betas[0]", betas[0]), "beta2": _real("betas[1]", betas[1]),
                          "eps": _real("eps", eps), "amsgrad": _flag("amsgrad", amsgrad)}
        self._state = None     # the core's TrainingState, made for the first network trained
        self._bound = None     # (dtype name, n_params) of that network

    def _state_for(self, network: Any) -> Any:
        key = (network.dtype.name, network.n_params)
        if self._state is None:
            self._state = _STATES[key[0]]()
            self._bound = key
        elif self._bound != key:
            raise ValueError(f"optimizer: its state belongs to a {self._bound[0]} network of {self._bound[1]} "
                             f"parameters, not this {key[0]} network of {key[1]}; use a new optimizer, or reset() "
                             f"this one")
        return self._state

    @property
    def steps(self) -> int:
        """The optimizer steps (batches) taken so far in this run."""
        return 0 if self._state is None else self._state.steps

    @property
    def epochs(self) -> int:
        """The epochs completed so far in this run."""
        return 0 if self._state is None else self._state.epochs

    def reset(self) -> None:
        """Forget the run: the next ``fit`` starts a new one, with any network.

        Examples
        --------
        >>> X, y = np.zeros((4, 2)), np.zeros(4)
        >>> opt = cr.optim.Adam()
        >>> _ = cr.Network([2, 1], seed=0).fit(X, y, epochs=2, optimizer=opt, seed=0)
        >>> opt.epochs
        2
        >>> opt.reset()
        >>> opt.epochs
        0
        """
        self._state = None
        self._bound = None

    def state_dict(self) -> Dict[str, Any]:
        """The settings and the run's state, as plain values and NumPy arrays (copies).

        Save it (with ``pickle``, beside :meth:`chainrule.Network.save`'s
        file) to continue the run later through :meth:`load_state_dict`.

        Returns
        -------
        dict
            ``type``, ``lr``, ``settings``, and ``state`` (None before the
            first ``fit``).

        Examples
        --------
        >>> X, y = np.zeros((4, 2)), np.zeros(4)
        >>> opt = cr.optim.SGD(lr=0.1, momentum=0.9)
        >>> _ = cr.Network([2, 1], seed=0).fit(X, y, epochs=3, batch_size=2, optimizer=opt, seed=0)
        >>> state = opt.state_dict()
        >>> state["type"], state["settings"]["momentum"], state["state"]["steps"]
        ('SGD', 0.9, 6)
        """
        out = {"type": type(self).__name__, "lr": self.lr, "settings": dict(self._settings), "state": None}
        if self._state is not None:
            s = self._state
            out["state"] = {"dtype": self._bound[0], "n_params": self._bound[1], "steps": s.steps,
                            "epochs": s.epochs, "records": s.records, "seeded": s.seeded, "seed": s.seed,
                            "generator": list(s.generator), "learning_rate": s.learning_rate,
                            "best_cost": s.best_cost, "epochs_without_improvement": s.epochs_without_improvement,
                            "has_best": s.has_best, "slots": [s.slot(i) for i in range(3)]}
        return out

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the run that :meth:`state_dict` saved (of an optimizer of the same type).

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned.

        Raises
        ------
        ValueError
            ``state`` is not a state dict of this optimizer's type.

        Examples
        --------
        >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
        >>> y = np.array([1.0, 1.0, 0.0, 0.0])
        >>> net, opt = cr.Network([2, 1], seed=0), cr.optim.Adam(lr=0.01)
        >>> _ = net.fit(X, y, epochs=2, optimizer=opt, seed=0)
        >>> saved_net, saved_opt = net.copy(), opt.state_dict()
        >>> one_run = net.fit(X, y, epochs=2, optimizer=opt)
        >>> again = cr.optim.Adam()
        >>> again.load_state_dict(saved_opt)
        >>> bool(np.array_equal(saved_net.fit(X, y, epochs=2, optimizer=again), one_run))
        True
        """
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            raise ValueError(f"state must be a state_dict() of a {type(self).__name__}")
        self.lr = _real("lr", state["lr"])
        self._settings = dict(state["settings"])
        run = state["state"]
        if run is None:
            self.reset()
            return
        core = _STATES[run["dtype"]]()
        core.steps, core.epochs, core.records = run["steps"], run["epochs"], run["records"]
        core.seeded, core.seed, core.generator = run["seeded"], run["seed"], list(run["generator"])
        core.learning_rate, core.best_cost = run["learning_rate"], run["best_cost"]
        core.epochs_without_improvement, core.has_best = run["epochs_without_improvement"], run["has_best"]
        for i, values in enumerate(run["slots"]):
            core.set_slot(i, np.ascontiguousarray(values, dtype=run["dtype"]))
        self._state, self._bound = core, (run["dtype"], run["n_params"])

    def __getstate__(self) -> Dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._state = self._bound = None
        self.load_state_dict(state)

    def __repr__(self) -> str:
        s = self._settings
        shown = {k: v for k, v in s.items() if k not in ("kind",)}
        return f"{type(self).__name__}(lr={self.lr!r}, " + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov momentum and weight decay.

    torch form: ``b = momentum b + g`` (``b = g`` on the first step), ``d = g +
    momentum b`` with Nesterov else ``b``, ``w -= lr d``, where ``g`` includes
    ``weight_decay w``. sklearn form: ``v = momentum v - lr g``, ``w += v``
    (Nesterov: ``w += momentum v - lr g``).

    Parameters
    ----------
    lr : float, default=0.1
        The learning rate, > 0.
    momentum : float, default=0.0
        In [0, 1).
    nesterov : bool, default=False
        Nesterov's momentum (needs ``momentum > 0``).
    weight_decay : float, default=0.0
        L2 decay added to the gradient, >= 0.
    form : {'torch', 'sklearn'}, default='torch'
        Whose formulas (docs/math.md, "Optimizers").

    Raises
    ------
    TypeError, ValueError
        As for :class:`Optimizer`; out-of-range values are refused by the
        first ``fit`` (a ``ValueError`` naming the setting).

    Examples
    --------
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    >>> y = np.array([1.0, 1.0, 0.0, 0.0])
    >>> net = cr.Network([2, 3, 1], seed=0)
    >>> history = net.fit(X, y, epochs=20, optimizer=cr.optim.SGD(lr=0.5, momentum=0.9, nesterov=True), seed=0)
    >>> bool(history[-1] < history[0])
    True
    """

    _kind = "sgd"

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 form: str = "torch") -> None:
        super().__init__(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, form=form)


class Adam(Optimizer):
    """Adam (Kingma and Ba), with weight decay added to the gradient (torch's ``Adam``) and AMSGrad.

    Parameters
    ----------
    lr : float, default=1e-3
        The learning rate, > 0.
    betas : (float, float), default=(0.9, 0.999)
        The decay rates of the moments, each in [0, 1).
    eps : float, default=1e-8
        Added to the denominator, > 0.
    weight_decay : float, default=0.0
        L2 decay added to the gradient, >= 0.
    amsgrad : bool, default=False
        Use the maximum of the second moments (AMSGrad).
    form : {'torch', 'sklearn'}, default='torch'
        Whose formulas (docs/math.md, "Optimizers"; scikit-learn's adds
        ``eps`` outside the bias correction).

    Raises
    ------
    TypeError, ValueError
        As for :class:`Optimizer`.

    Examples
    --------
    >>> opt = cr.optim.Adam(lr=0.01, betas=(0.9, 0.99), amsgrad=True)
    >>> net = cr.Network([2, 1], seed=0)
    >>> _ = net.fit(np.zeros((8, 2)), np.zeros(8), epochs=2, batch_size=4, optimizer=opt, seed=0)
    >>> opt.steps
    4
    """

    _kind = "adam"

    def __init__(self, lr: float = 1e-3, betas: Union[Tuple[float, float], Sequence[float]] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, form: str = "torch") -> None:
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, form=form)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter; torch's ``AdamW``): ``w *= 1 - lr wd`` first.

    Parameters
    ----------
    lr : float, default=1e-3
        The learning rate, > 0.
    betas : (float, float), default=(0.9, 0.999)
        The decay rates of the moments, each in [0, 1).
    eps : float, default=1e-8
        Added to the denominator, > 0.
    weight_decay : float, default=1e-2
        The decoupled decay, >= 0.
    amsgrad : bool, default=False
        Use the maximum of the second moments (AMSGrad).

    Raises
    ------
    TypeError, ValueError
        As for :class:`Optimizer`.

    Examples
    --------
    >>> net = cr.Network([2, 1], output="identity", loss="mse", seed=0)
    >>> X, y = np.zeros((4, 2)), np.zeros(4)  # a zero gradient: only the decay acts
    >>> w = net.weights[0].copy()
    >>> _ = net.fit(X, y, epochs=1, batch_size=4, optimizer=cr.optim.AdamW(lr=0.1, weight_decay=0.5), seed=0)
    >>> bool(np.allclose(net.weights[0], w * (1 - 0.1 * 0.5)))
    True
    """

    _kind = "adamw"

    def __init__(self, lr: float = 1e-3, betas: Union[Tuple[float, float], Sequence[float]] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, form="torch")


class Schedule:
    """The learning rate of each epoch, from the optimizer's (or ``fit``'s) base rate ``lr``.

    The base of the schedules below; pass one of those (or a name, or a
    callable ``(epoch, lr) -> rate``) as ``fit``'s ``schedule``.

    Parameters
    ----------
    kind : str, default='constant'
        'constant', 'invscaling', 'adaptive', 'step' or 'cosine'.
    power_t, step_size, gamma, t_max, eta_min
        The settings of the subclasses (see each).
    custom : callable, optional
        ``custom(epoch, lr) -> rate``, called before each epoch.

    Raises
    ------
    TypeError
        A setting of the wrong type.
    ValueError
        ``step_size`` or ``t_max`` below 1.

    Examples
    --------
    >>> rates = []
    >>> def halving(epoch, lr):
    ...     rates.append(lr / 2**epoch)
    ...     return rates[-1]
    >>> net = cr.Network([2, 1], seed=0)
    >>> _ = net.fit(np.zeros((4, 2)), np.zeros(4), epochs=3, lr=0.8, schedule=halving, seed=0)
    >>> rates
    [0.8, 0.4, 0.2]
    """

    def __init__(self, kind: str = "constant", *, power_t: float = 0.5, step_size: int = 1, gamma: float = 0.1,
                 t_max: int = 1, eta_min: float = 0.0, custom: Optional[Callable[[int, float], float]] = None) -> None:
        self._settings = {"kind": kind, "power_t": _real("power_t", power_t),
                          "step_size": _positive_int("step_size", step_size), "gamma": _real("gamma", gamma),
                          "t_max": _positive_int("t_max", t_max), "eta_min": _real("eta_min", eta_min),
                          "custom": custom}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Constant(Schedule):
    """``lr`` every epoch (the default).

    Examples
    --------
    >>> cr.optim.Constant()
    Constant()
    """

    def __init__(self) -> None:
        super().__init__("constant")


class InvScaling(Schedule):
    """``lr / (t + 1) ** power_t``, ``t`` the records trained on before the epoch (scikit-learn's 'invscaling').

    Parameters
    ----------
    power_t : float, default=0.5
        The exponent.

    Raises
    ------
    TypeError
        ``power_t`` is not a real number.

    Examples
    --------
    >>> net = cr.Network([2, 1], seed=0)
    >>> history = net.fit(np.ones((4, 2)), np.ones(4), epochs=3, lr=1.0, schedule=cr.optim.InvScaling(0.5), seed=0)
    >>> len(history)
    3
    """

    def __init__(self, power_t: float = 0.5) -> None:
        super().__init__("invscaling", power_t=power_t)


class Adaptive(Schedule):
    """``lr``, divided by 5 each time the cost stalls for ``n_iter_no_change`` epochs (by ``tol``), down to 1e-6.

    scikit-learn's 'adaptive'; ``fit`` needs ``tol``. Training stops when the
    rate would fall below 1e-6.

    Examples
    --------
    >>> net = cr.Network([2, 1], seed=0)
    >>> X, y = np.ones((4, 2)), np.ones(4)
    >>> history = net.fit(X, y, epochs=50, lr=0.1, schedule=cr.optim.Adaptive(), tol=1e-3, n_iter_no_change=2, seed=0)
    >>> len(history) <= 50
    True
    """

    def __init__(self) -> None:
        super().__init__("adaptive")


class StepDecay(Schedule):
    """``lr * gamma ** (epoch // step_size)`` (torch's StepLR).

    Parameters
    ----------
    step_size : int
        Epochs between two decays, >= 1.
    gamma : float, default=0.1
        The factor of each decay.

    Raises
    ------
    TypeError
        A setting of the wrong type.
    ValueError
        ``step_size`` below 1.

    Examples
    --------
    >>> net = cr.Network([2, 1], seed=0)
    >>> opt = cr.optim.SGD(lr=0.1)
    >>> _ = net.fit(np.ones((4, 2)), np.ones(4), epochs=4, optimizer=opt, schedule=cr.optim.StepDecay(2, 0.5), seed=0)
    >>> opt.epochs
    4
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        super().__init__("step", step_size=step_size, gamma=gamma)


class Cosine(Schedule):
    """``eta_min + (lr - eta_min) (1 + cos(pi epoch / t_max)) / 2``, held at eta_min after t_max (torch's CosineAnnealingLR).

    Parameters
    ----------
    t_max : int
        The epochs of the half cosine, >= 1.
    eta_min : float, default=0.0
        The last rate.

    Raises
    ------
    TypeError
        A setting of the wrong type.
    ValueError
        ``t_max`` below 1.

    Examples
    --------
    >>> net = cr.Network([2, 1], seed=0)
    >>> history = net.fit(np.ones((4, 2)), np.ones(4), epochs=5, optimizer=cr.optim.Adam(lr=0.1),
    ...                   schedule=cr.optim.Cosine(t_max=5), seed=0)
    >>> bool(history[-1] < history[0])
    True
    """

    def __init__(self, t_max: int, eta_min: float = 0.0) -> None:
        super().__init__("cosine", t_max=t_max, eta_min=eta_min)


_SCHEDULES = {"constant": Constant, "invscaling": InvScaling, "adaptive": Adaptive}


def _schedule_settings(schedule: Union[None, str, Schedule, Callable[[int, float], float]]) -> Dict[str, Any]:
    if schedule is None:
        return dict(_defaults()[1])
    if isinstance(schedule, str):
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(_SCHEDULES)}, a Schedule or a callable(epoch, lr), "
                             f"got {schedule!r}")
        schedule = _SCHEDULES[schedule]()
    elif not isinstance(schedule, Schedule):
        if not callable(schedule):
            raise TypeError(f"schedule must be a name, a chainrule.optim.Schedule or a callable(epoch, lr), "
                            f"got {type(schedule).__name__}")
        schedule = Schedule("constant", custom=schedule)
    return schedule._settings


def _plain_sgd_settings() -> Dict[str, Any]:
    return dict(_defaults()[0])


@functools.lru_cache(maxsize=None)
def _defaults() -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The settings of plain SGD and of the constant schedule, built (and checked) once: a fit
    without an optimizer takes copies of these rather than building them again each call."""
    return SGD()._settings, Constant()._settings

