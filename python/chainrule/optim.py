"""Optimizers and learning-rate schedules for :meth:`chainrule.Network.fit`.

An optimizer holds its hyperparameters and, like torch.optim's, its state
(velocities or moments, the step count) together with the rest of the
training run (the shuffling stream, the schedule's and the stopping rule's
values). Passing the same optimizer to several ``fit`` calls continues one
run: ``fit(epochs=a)`` then ``fit(epochs=b)`` equals ``fit(epochs=a + b)``
bit for bit. The update rules are written in docs/math.md ("Optimizers");
every rule runs in the C++ core as one fused loop over the parameters.

    net.fit(X, y, epochs=20, optimizer=cr.optim.Adam(lr=1e-3), schedule=cr.optim.Cosine(t_max=20))

``form="torch"`` (the default) follows torch.optim's formulas;
``form="sklearn"`` follows scikit-learn's optimizer classes
(``sklearn.neural_network._stochastic_optimizers``), whose SGD velocity
includes the learning rate and whose Adam adds eps outside the bias
correction.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Union

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
    (each error names the setting); their types here.
    """

    _kind = "sgd"

    def __init__(self, lr: float, *, momentum=0.0, nesterov=False, weight_decay=0.0, betas=(0.9, 0.999),
                 eps=1e-8, amsgrad=False, form="torch"):
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

    def _state_for(self, network):
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
        """The optimizer steps taken so far in this run."""
        return 0 if self._state is None else self._state.steps

    @property
    def epochs(self) -> int:
        """The epochs completed so far in this run."""
        return 0 if self._state is None else self._state.epochs

    def reset(self) -> None:
        """Forget the run: the next ``fit`` starts a new one."""
        self._state = None
        self._bound = None

    def state_dict(self) -> dict:
        """The settings and the run's state, as plain values and NumPy arrays (copies)."""
        out = {"type": type(self).__name__, "lr": self.lr, "settings": dict(self._settings), "state": None}
        if self._state is not None:
            s = self._state
            out["state"] = {"dtype": self._bound[0], "n_params": self._bound[1], "steps": s.steps,
                            "epochs": s.epochs, "records": s.records, "seeded": s.seeded, "seed": s.seed,
                            "generator": list(s.generator), "learning_rate": s.learning_rate,
                            "best_cost": s.best_cost, "epochs_without_improvement": s.epochs_without_improvement,
                            "has_best": s.has_best, "slots": [s.slot(i) for i in range(3)]}
        return out

    def load_state_dict(self, state: dict) -> None:
        """Continue the run that :meth:`state_dict` saved (of an optimizer of the same type)."""
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

    def __getstate__(self) -> dict:
        return self.state_dict()

    def __setstate__(self, state: dict) -> None:
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
    """

    _kind = "sgd"

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 form: str = "torch"):
        super().__init__(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, form=form)


class Adam(Optimizer):
    """Adam (Kingma and Ba), with weight decay added to the gradient (torch's ``Adam``) and AMSGrad."""

    _kind = "adam"

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, form: str = "torch"):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, form=form)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter; torch's ``AdamW``): ``w *= 1 - lr wd`` first."""

    _kind = "adamw"

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, form="torch")


class Schedule:
    """The learning rate of each epoch, from the optimizer's (or ``fit``'s) base rate ``lr``."""

    def __init__(self, kind: str = "constant", *, power_t=0.5, step_size=1, gamma=0.1, t_max=1, eta_min=0.0,
                 custom: Optional[Callable[[int, float], float]] = None):
        self._settings = {"kind": kind, "power_t": _real("power_t", power_t),
                          "step_size": _positive_int("step_size", step_size), "gamma": _real("gamma", gamma),
                          "t_max": _positive_int("t_max", t_max), "eta_min": _real("eta_min", eta_min),
                          "custom": custom}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Constant(Schedule):
    """``lr`` every epoch."""

    def __init__(self):
        super().__init__("constant")


class InvScaling(Schedule):
    """``lr / (t + 1) ** power_t``, ``t`` the records trained on before the epoch (scikit-learn's 'invscaling')."""

    def __init__(self, power_t: float = 0.5):
        super().__init__("invscaling", power_t=power_t)


class Adaptive(Schedule):
    """``lr``, divided by 5 each time the cost stalls for ``n_iter_no_change`` epochs (by ``tol``), down to 1e-6.

    scikit-learn's 'adaptive'; ``fit`` needs ``tol``. Training stops when the
    rate would fall below 1e-6.
    """

    def __init__(self):
        super().__init__("adaptive")


class StepDecay(Schedule):
    """``lr * gamma ** (epoch // step_size)`` (torch's StepLR)."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        super().__init__("step", step_size=step_size, gamma=gamma)


class Cosine(Schedule):
    """``eta_min + (lr - eta_min) (1 + cos(pi epoch / t_max)) / 2``, held at eta_min after t_max (torch's CosineAnnealingLR)."""

    def __init__(self, t_max: int, eta_min: float = 0.0):
        super().__init__("cosine", t_max=t_max, eta_min=eta_min)


_SCHEDULES = {"constant": Constant, "invscaling": InvScaling, "adaptive": Adaptive}


def _schedule_settings(schedule: Union[None, str, Schedule, Callable[[int, float], float]]) -> dict:
    if schedule is None:
        schedule = Constant()
    elif isinstance(schedule, str):
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


def _plain_sgd_settings() -> dict:
    return SGD()._settings

