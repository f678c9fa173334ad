# Type stub of the compiled module chainrule._core (cpp/bindings/module.cpp).
# The public API is chainrule.Network (network.py), which wraps these classes.
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import numpy as np
import numpy.typing as npt

__version__: str

class DivergenceError(FloatingPointError): ...
class ModelFormatError(ValueError): ...
class BusyError(RuntimeError): ...

_N = TypeVar("_N", bound="_CoreNetwork")
# What the core reads in place: a NumPy array, or an object with __dlpack__
# that network.py has viewed through np.from_dlpack. The dtype and the layout
# are checked at run time.
_Array = npt.NDArray[np.floating[Any]]
# X: an ndarray, or a scipy.sparse CSR matrix or array (read as views of its
# data, indices and indptr; network.py converts the other sparse formats).
_Records = Union[_Array, Any]

# Typing only: _core has no class _TrainingState. TrainingStateFloat32 and
# TrainingStateFloat64 are separate pybind11 classes with the same members,
# spelled out again in each below so that mypy.stubtest checks them against
# the compiled module (it skips what a class inherits from a stub-only base).
class _TrainingState:
    def __init__(self) -> None: ...
    steps: int
    epochs: int
    records: int
    seeded: bool
    seed: int
    generator: list[int]  # 4 words; setting another count raises ValueError
    learning_rate: float
    best_cost: float
    epochs_without_improvement: int
    has_best: bool
    def slot(self, index: int) -> _Array: ...
    def set_slot(self, index: int, values: _Array) -> None: ...

class TrainingStateFloat32(_TrainingState):
    def __init__(self) -> None: ...
    steps: int
    epochs: int
    records: int
    seeded: bool
    seed: int
    generator: list[int]  # 4 words; setting another count raises ValueError
    learning_rate: float
    best_cost: float
    epochs_without_improvement: int
    has_best: bool
    def slot(self, index: int) -> _Array: ...
    def set_slot(self, index: int, values: _Array) -> None: ...

class TrainingStateFloat64(_TrainingState):
    def __init__(self) -> None: ...
    steps: int
    epochs: int
    records: int
    seeded: bool
    seed: int
    generator: list[int]  # 4 words; setting another count raises ValueError
    learning_rate: float
    best_cost: float
    epochs_without_improvement: int
    has_best: bool
    def slot(self, index: int) -> _Array: ...
    def set_slot(self, index: int, values: _Array) -> None: ...

# Typing only: _core has no class _CoreNetwork. NetworkFloat32 and NetworkFloat64
# are separate pybind11 classes with no common base besides pybind11's own;
# this stub base spells out the methods both have (for code that takes either),
# and each class repeats them for mypy.stubtest. Never import it or
# isinstance() against it.
class _CoreNetwork:
    def __init__(self, layer_sizes: Sequence[int], activations: Sequence[str], loss: str, seed: int) -> None: ...
    @property
    def layer_sizes(self) -> list[int]: ...
    @property
    def activations(self) -> list[str]: ...
    @property
    def loss(self) -> str: ...
    @property
    def num_params(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    def weight(self, layer: int) -> _Array: ...
    def bias(self, layer: int) -> _Array: ...
    def params(self) -> _Array: ...
    def predict(self, X: _Records) -> _Array: ...
    def cost(self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None) -> float: ...
    def gradients(self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None) -> list[tuple[_Array, _Array]]: ...
    def cost_and_gradient(
        self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None, alpha: float = 0.0
    ) -> tuple[float, _Array]: ...
    def sgd_step(self, X: _Array, y: _Array, lr: float) -> float: ...
    def fit(
        self,
        X: _Records,
        y: _Array,
        epochs: int,
        lr: float,
        batch_size: int,
        shuffle: bool,
        seed: int,
        tol: Optional[float],
        n_iter_no_change: int,
        on_epoch: Optional[Callable[[int, float], object]],
        optimizer: dict[str, Any],
        schedule: dict[str, Any],
        alpha: float,
        state: Optional[_TrainingState],  # of the network's dtype
        sample_weight: Optional[_Array] = None,
        dropout: Sequence[float] = ...,
        reducer: Optional[Any] = None,  # chainrule.distributed.RankOrderSum, or any object with its members
    ) -> npt.NDArray[np.float64]: ...
    def save(self, path: Union[str, bytes]) -> None: ...  # bytes: os.fsencode, as network.py passes
    def copy(self: _N) -> _N: ...  # the same class as self

class NetworkFloat32(_CoreNetwork):
    def __init__(self, layer_sizes: Sequence[int], activations: Sequence[str], loss: str, seed: int) -> None: ...
    @property
    def layer_sizes(self) -> list[int]: ...
    @property
    def activations(self) -> list[str]: ...
    @property
    def loss(self) -> str: ...
    @property
    def num_params(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    def weight(self, layer: int) -> _Array: ...
    def bias(self, layer: int) -> _Array: ...
    def params(self) -> _Array: ...
    def predict(self, X: _Records) -> _Array: ...
    def cost(self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None) -> float: ...
    def gradients(self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None) -> list[tuple[_Array, _Array]]: ...
    def cost_and_gradient(
        self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None, alpha: float = 0.0
    ) -> tuple[float, _Array]: ...
    def sgd_step(self, X: _Array, y: _Array, lr: float) -> float: ...
    def fit(
        self,
        X: _Records,
        y: _Array,
        epochs: int,
        lr: float,
        batch_size: int,
        shuffle: bool,
        seed: int,
        tol: Optional[float],
        n_iter_no_change: int,
        on_epoch: Optional[Callable[[int, float], object]],
        optimizer: dict[str, Any],
        schedule: dict[str, Any],
        alpha: float,
        state: Optional[_TrainingState],  # of the network's dtype
        sample_weight: Optional[_Array] = None,
        dropout: Sequence[float] = ...,
        reducer: Optional[Any] = None,  # chainrule.distributed.RankOrderSum, or any object with its members
    ) -> npt.NDArray[np.float64]: ...
    def save(self, path: Union[str, bytes]) -> None: ...  # bytes: os.fsencode, as network.py passes
    def copy(self: _N) -> _N: ...  # the same class as self

class NetworkFloat64(_CoreNetwork):
    def __init__(self, layer_sizes: Sequence[int], activations: Sequence[str], loss: str, seed: int) -> None: ...
    @property
    def layer_sizes(self) -> list[int]: ...
    @property
    def activations(self) -> list[str]: ...
    @property
    def loss(self) -> str: ...
    @property
    def num_params(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    def weight(self, layer: int) -> _Array: ...
    def bias(self, layer: int) -> _Array: ...
    def params(self) -> _Array: ...
    def predict(self, X: _Records) -> _Array: ...
    def cost(self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None) -> float: ...
    def gradients(self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None) -> list[tuple[_Array, _Array]]: ...
    def cost_and_gradient(
        self, X: _Records, y: _Array, sample_weight: Optional[_Array] = None, alpha: float = 0.0
    ) -> tuple[float, _Array]: ...
    def sgd_step(self, X: _Array, y: _Array, lr: float) -> float: ...
    def fit(
        self,
        X: _Records,
        y: _Array,
        epochs: int,
        lr: float,
        batch_size: int,
        shuffle: bool,
        seed: int,
        tol: Optional[float],
        n_iter_no_change: int,
        on_epoch: Optional[Callable[[int, float], object]],
        optimizer: dict[str, Any],
        schedule: dict[str, Any],
        alpha: float,
        state: Optional[_TrainingState],  # of the network's dtype
        sample_weight: Optional[_Array] = None,
        dropout: Sequence[float] = ...,
        reducer: Optional[Any] = None,  # chainrule.distributed.RankOrderSum, or any object with its members
    ) -> npt.NDArray[np.float64]: ...
    def save(self, path: Union[str, bytes]) -> None: ...  # bytes: os.fsencode, as network.py passes
    def copy(self: _N) -> _N: ...  # the same class as self

def model_dtype(path: Union[str, bytes]) -> str: ...
def load(path: Union[str, bytes]) -> Union[NetworkFloat32, NetworkFloat64]: ...

def distributed_order(num_records: int, seed: int, rank: int, epoch: int) -> list[int]: ...
def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...
def gemm_backend() -> str: ...
def _close_exit_gate() -> None: ...  # registered with atexit at import

ACTIVATIONS: tuple[str, ...]
LOSSES: tuple[str, ...]
