"""Export chainrule models to ONNX, for onnxruntime and other ONNX runtimes.

:func:`to_onnx` turns a :class:`chainrule.Network` into an ``onnx.ModelProto``
that computes ``predict``; :func:`save` writes one to a file atomically.
Importing this module also registers converters with skl2onnx (when it is
installed) for :class:`chainrule.sklearn.MLPClassifier`,
:class:`~chainrule.sklearn.MLPRegressor` and
:class:`~chainrule.sklearn.LogisticRegression`, so that ``skl2onnx.to_onnx``
converts pipelines that end in one of them, with the outputs skl2onnx gives
scikit-learn's own classifiers and regressors.

The graph is the forward pass of docs/math.md ("Forward pass"), layer by
layer: ``Z_l = A_{l-1} W_l^T + b_l`` is one ``Gemm`` (``transB=1``: the
weights keep the network's ``(n_l, n_{l-1})`` layout, copied bit for bit),
followed by the layer's activation (``Sigmoid``, ``Tanh``, ``Relu``, nothing
for identity, ``Where(Z > 0, Z, 0.01 Z)`` for leaky_relu, ``Softmax`` over
each row for a softmax output). It computes in
the network's dtype, so an ONNX runtime reproduces ``predict`` up to the
rounding of its own kernels (the order of the sums in its GEMM, its
``exp``), not bit for bit.

onnx is an optional dependency: ``pip install 'chainrule[onnx]'`` (which
also installs skl2onnx for the pipeline converters).
"""

from __future__ import annotations

import importlib.util
import numbers
import os
import secrets
import stat

import numpy as np
from numpy.typing import DTypeLike

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as error:  # pragma: no cover - exercised only without onnx
    raise ImportError("chainrule.onnx needs onnx: pip install 'chainrule[onnx]'") from error

from . import __version__
from .network import Network, _dtype_name

__all__ = ["to_onnx", "save", "register_converters", "DEFAULT_OPSET"]

#: The ONNX opset of :func:`to_onnx`'s models unless ``opset`` says otherwise:
#: one that onnxruntime 1.19 (the oldest the test extra allows) reads. The
#: graph needs nothing newer: every operator in it, and in the converters'
#: graphs, has had its present meaning since opset 13.
DEFAULT_OPSET = 17
_MIN_OPSET = 13

_TENSOR_TYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}

# chainrule's activation names -> the ONNX operator computing it; identity needs none.
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "identity": None, "softmax": "Softmax",
                   "leaky_relu": "Where"}

# leaky_relu's slope (docs/math.md). Not ONNX's LeakyRelu: its alpha is a
# float32 attribute, which a float64 model would multiply by as 0.00999999977.
_LEAKY_SLOPE = 0.01


# -- the forward pass as a list of nodes, shared by to_onnx and the skl2onnx converters --


class _Graph:
    """Nodes and initializers collected before they go into a model or a skl2onnx container.

    ``fresh(hint)`` makes a name no other tensor of the final model has: a
    counter for :func:`to_onnx`, the skl2onnx scope's for the converters.
    """

    def __init__(self, fresh):
        self.fresh = fresh
        self.nodes = []         # (op_type, inputs, outputs, attributes)
        self.initializers = []  # (name, numpy array)

    def constant(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.initializers.append((name, value))
        return name

    def node(self, op_type: str, inputs, hint: str, output=None, **attributes) -> str:
        output = self.fresh(hint) if output is None else output
        self.nodes.append((op_type, list(inputs), [output], attributes))
        return output


def _check_network(network, argument: str) -> None:
    if not isinstance(network, Network):
        hint = ""
        if type(network).__module__.startswith("chainrule.sklearn"):
            hint = ("; for an estimator use skl2onnx.to_onnx(estimator, X[:1]) (this module registers it), "
                    "or pass its estimator.network_")
        raise TypeError(f"{argument} must be a chainrule.Network, got {type(network).__name__}{hint}")
    for layer, name in enumerate(network.activations):
        if name not in _ACTIVATION_OPS:  # pragma: no cover - every activation the core has is listed
            raise ValueError(f"{argument}: layer {layer} has activation {name!r}, which chainrule.onnx cannot export")


def _forward(graph: _Graph, network: Network, x: str) -> str:
    """Add the forward pass of ``network`` on input tensor ``x`` (its dtype); return A_L's name."""
    a = x
    for layer, (weight, bias, activation) in enumerate(zip(network.weights, network.biases, network.activations)):
        # Copies: the views share the network's memory, which a later fit would change.
        w = graph.constant(f"W{layer + 1}", np.array(weight))
        b = graph.constant(f"b{layer + 1}", np.array(bias))
        z = graph.node("Gemm", [a, w, b], f"Z{layer + 1}", transB=1)  # Z = A W^T + b (b broadcast over rows)
        op = _ACTIVATION_OPS[activation]
        if op is None:
            a = z
        elif op == "Where":  # leaky_relu: z if z > 0 else 0.01 z, the slope in the network's dtype
            zero = graph.constant(f"zero{layer + 1}", np.zeros((), dtype=network.dtype))
            slope = graph.constant(f"slope{layer + 1}", np.array(_LEAKY_SLOPE, dtype=network.dtype))
            positive = graph.node("Greater", [z, zero], f"positive{layer + 1}")
            scaled = graph.node("Mul", [z, slope], f"scaled{layer + 1}")
            a = graph.node(op, [positive, z, scaled], f"A{layer + 1}")
        elif op == "Softmax":
            # Row-wise, as docs/math.md's softmax; axis=1 means the same in every opset.
            a = graph.node(op, [z], f"A{layer + 1}", axis=1)
        else:
            a = graph.node(op, [z], f"A{layer + 1}")
    return a


def _opset(opset: object) -> int:
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
    opset = int(opset)
    newest = onnx.defs.onnx_opset_version()
    if not _MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {_MIN_OPSET} and {newest} (this onnx's newest), got {opset}")
    return opset


def _tensor_name(argument: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{argument} must be a non-empty str, got {value!r}")
    return value


def to_onnx(network: Network, *, dtype: DTypeLike | None = None, opset: int = DEFAULT_OPSET, input_name: str = "X",
            output_name: str = "Y") -> onnx.ModelProto:
    """An ``onnx.ModelProto`` computing ``network.predict``.

    Parameters
    ----------
    network : chainrule.Network
        Any network: every activation, softmax output, float32 or float64.
        Its parameters are copied into the model; later changes to the
        network do not reach it.
    dtype : {None, 'float32', 'float64'}
        The element type of the model's input and output. None (the default)
        is the network's dtype. Another dtype adds a ``Cast`` to the
        network's dtype after the input and one back before the output: the
        model still computes in the network's dtype, as ``predict`` does.
    opset : int
        The ONNX opset to declare, from 13 to the installed onnx's newest.
    input_name, output_name : str
        Names of the input (shape ``[N, layer_sizes[0]]``, ``N`` any batch
        size) and of the output (``[N, layer_sizes[-1]]``).

    Returns
    -------
    onnx.ModelProto
        Checked by ``onnx.checker``.

    Raises
    ------
    TypeError
        ``network`` is not a :class:`chainrule.Network`, or a name or
        ``opset`` has the wrong type.
    ValueError
        ``dtype`` is not float32 or float64, ``opset`` is out of range, or
        the two names are the same.

    Examples
    --------
    >>> import onnxruntime
    >>> import chainrule.onnx
    >>> net = cr.Network([3, 4, 2], activation="relu", output="softmax", loss="cce", seed=0)
    >>> model = chainrule.onnx.to_onnx(net)
    >>> [node.op_type for node in model.graph.node]
    ['Gemm', 'Relu', 'Gemm', 'Softmax', 'Identity']
    >>> session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> X = np.random.default_rng(0).standard_normal((5, 3))
    >>> bool(np.allclose(session.run(None, {"X": X})[0], net.predict(X), rtol=1e-12, atol=0))
    True
    """
    _check_network(network, "network")
    net_dtype = network.dtype.name
    io_dtype = net_dtype if dtype is None else _dtype_name(dtype, "dtype", also=" (or None)")
    opset = _opset(opset)
    input_name = _tensor_name("input_name", input_name)
    output_name = _tensor_name("output_name", output_name)
    if input_name == output_name:
        raise ValueError(f"input_name and output_name must differ, both are {input_name!r}")

    used = {input_name, output_name}

    def fresh(hint: str) -> str:
        name, k = hint, 0
        while name in used:
            k += 1
            name = f"{hint}_{k}"
        used.add(name)
        return name

    graph = _Graph(fresh)
    x = input_name
    if io_dtype != net_dtype:
        x = graph.node("Cast", [x], "X_cast", to=_TENSOR_TYPES[net_dtype])
    a = _forward(graph, network, x)
    if io_dtype != net_dtype:
        graph.node("Cast", [a], "", output=output_name, to=_TENSOR_TYPES[io_dtype])
    else:  # A_L under the output's name
        graph.node("Identity", [a], "", output=output_name)

    nodes = [helper.make_node(op, inputs, outputs, name=f"{op}_{k}", **attributes)
             for k, (op, inputs, outputs, attributes) in enumerate(graph.nodes)]
    initializers = [numpy_helper.from_array(value, name) for name, value in graph.initializers]
    sizes = network.layer_sizes
    onnx_graph = helper.make_graph(
        nodes, "chainrule_network",
        [helper.make_tensor_value_info(input_name, _TENSOR_TYPES[io_dtype], ["N", sizes[0]])],
        [helper.make_tensor_value_info(output_name, _TENSOR_TYPES[io_dtype], ["N", sizes[-1]])],
        initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opset_ids, producer_name="chainrule",
                              producer_version=__version__,
                              # The oldest IR version that holds the opset: older runtimes read it too.
                              ir_version=helper.find_min_ir_version_for(opset_ids))
    model.doc_string = repr(network)
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto | Network, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
    """Write ``model`` (an ``onnx.ModelProto``, or a Network to pass through :func:`to_onnx`) to ``path``.

    Atomically, as :meth:`chainrule.Network.save` writes its own files: the
    bytes go to a temporary file in the same directory, which is flushed to
    disk and then renamed over ``path``, so an interrupted save leaves any
    old file whole. A symbolic link at ``path`` is replaced, not followed; a
    directory, a FIFO or a device is refused.

    Parameters
    ----------
    model : onnx.ModelProto or chainrule.Network
        What to write.
    path : str, bytes or os.PathLike
        The file name.

    Raises
    ------
    TypeError
        ``model`` is neither, or ``path`` is not a str, bytes or os.PathLike.
    ValueError
        ``model`` is 2 GiB or larger (protobuf's limit; such a model needs
        onnx's external-data format), ``path`` holds a NUL byte or names a
        FIFO, socket or device.
    IsADirectoryError
        ``path`` is a directory.
    OSError
        The file cannot be written or renamed.

    Examples
    --------
    >>> import os, tempfile
    >>> import onnx
    >>> import chainrule.onnx
    >>> net = cr.Network([2, 3, 1], dtype="float32", seed=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     chainrule.onnx.save(chainrule.onnx.to_onnx(net, opset=13), os.path.join(folder, "net.onnx"))
    ...     model = onnx.load(os.path.join(folder, "net.onnx"))
    >>> model.opset_import[0].version, model.producer_name
    (13, 'chainrule')
    """
    if isinstance(model, Network):
        model = to_onnx(model)
    elif not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto or a chainrule.Network, got {type(model).__name__}")
    try:
        # One str for bytes names too: os.fsdecode's surrogate escapes give the same bytes back.
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}") from None
    if "\0" in path:  # os.lstat would say only "embedded null byte"
        raise ValueError(f"path {path!r} holds a NUL byte, which no file name can hold")
    size = model.ByteSize()
    if size >= 2**31:
        raise ValueError(f"model is {size} bytes; a single ONNX file holds less than 2 GiB")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"path {path!r} is a directory")
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise ValueError(f"path {path!r} is not a regular file (a FIFO, socket or device); it is not replaced")
    directory = os.path.dirname(path) or "."
    # A new name beside the target: the rename stays within one file system.
    # O_EXCL never opens someone else's file; the mode 0o666 is cut by the umask, as for any new file.
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(model.SerializeToString())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    # The rename itself reaches the disk once the directory is synced.
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


# -- skl2onnx: converters for chainrule.sklearn's estimators ---------------------------
#
# skl2onnx converts a pipeline step by step: a parser declares each step's
# outputs, a shape calculator gives them types and shapes, and a converter
# adds the nodes. For the classifiers, skl2onnx's own classifier parser
# declares `label` and `probabilities` and appends its ZipMap (option
# `zipmap`); the regressor gets one output, `variable`. The conventions are
# those of skl2onnx's converters for scikit-learn's MLPs: probabilities and
# predictions take the input's float type (double for a double input, float
# otherwise); labels are int64, or strings when the classes are strings; a
# multi-label classifier's label is the [N, n_labels] indicator matrix.
#
# The network computes in its own dtype, as `predict` does: an input of the
# other float type (or int64) is cast to it first, and the outputs are cast to
# the declared type at the end. Labels are taken from the network's own output,
# before that cast, so that they are the labels `predict` gives.

_REGISTERED = False


def _skl2onnx():
    try:
        import skl2onnx
        from skl2onnx.common import data_types
    except ImportError as error:
        raise ImportError("chainrule.onnx's skl2onnx converters need skl2onnx: "
                          "pip install 'chainrule[onnx]'") from error
    return skl2onnx, data_types


def _classes(model, nocl=False):
    """``(labels, ONNX element type)`` for a classifier's label output: int64 or strings.

    With skl2onnx's option ``nocl`` the labels are the class indices
    0..n_classes-1. Otherwise integers and booleans become int64. Float labels are accepted when every
    one is a whole number (scikit-learn's loaders give such labels), as
    skl2onnx does for scikit-learn's classifiers; strings stay strings.
    """
    classes = np.asarray(model.classes_)
    if nocl:
        return np.arange(len(classes), dtype=np.int64), TensorProto.INT64
    if classes.dtype.kind in "iub":
        return classes.astype(np.int64), TensorProto.INT64
    if classes.dtype.kind == "f":
        if not np.all(np.isfinite(classes)) or np.any(classes != np.round(classes)):
            raise ValueError(f"model.classes_ holds non-integer labels {classes[:5].tolist()}: an ONNX label output "
                             f"is int64 or string; fit on integer or string labels")
        return classes.astype(np.int64), TensorProto.INT64
    if classes.dtype.kind in "UO" and all(isinstance(c, str) for c in classes.tolist()):
        return np.array([c.encode("utf-8") for c in classes.tolist()], dtype=object), TensorProto.STRING
    raise ValueError(f"model.classes_ must hold integers or strings to be exported, got dtype {classes.dtype}")


def _fitted_network(model) -> Network:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "network_")
    return model.network_


def _check_input(operator, data_types) -> None:
    """One input of a float or int64 tensor type, with the network's feature count when known."""
    if len(operator.inputs) != 1:
        raise RuntimeError(f"{type(operator.raw_operator).__name__} takes one input tensor, "
                           f"got {len(operator.inputs)}")
    input_type = operator.inputs[0].type
    accepted = (data_types.FloatTensorType, data_types.DoubleTensorType, data_types.Int64TensorType)
    if not isinstance(input_type, accepted):
        raise TypeError(f"{type(operator.raw_operator).__name__} takes a float, double or int64 tensor, "
                        f"got {type(input_type).__name__}")
    network = _fitted_network(operator.raw_operator)
    shape = input_type.shape
    if shape is not None and len(shape) == 2 and isinstance(shape[1], numbers.Integral) \
            and shape[1] != network.layer_sizes[0]:
        raise ValueError(f"the input has {shape[1]} features, but {type(operator.raw_operator).__name__} "
                         f"was fitted with {network.layer_sizes[0]}")


def _output_float_type(operator, data_types):
    """skl2onnx's rule: a double input gives double outputs, any other float outputs."""
    return (data_types.DoubleTensorType if isinstance(operator.inputs[0].type, data_types.DoubleTensorType)
            else data_types.FloatTensorType)


def _classifier_shapes(operator) -> None:
    _, data_types = _skl2onnx()
    _check_input(operator, data_types)
    model = operator.raw_operator
    if len(operator.outputs) != 2:
        raise RuntimeError(f"{type(model).__name__} has two outputs (label, probabilities), "
                           f"got {len(operator.outputs)}")
    n = operator.inputs[0].get_first_dimension()
    _, label_type = _classes(model, _nocl(operator.scope_inst, model))
    label_class = data_types.StringTensorType if label_type == TensorProto.STRING else data_types.Int64TensorType
    kind = _target_kind(model)
    num_columns = len(model.classes_)
    operator.outputs[0].set_type(label_class([n, num_columns] if kind == "multilabel" else [n]))
    probability_type = _output_float_type(operator, data_types)
    if _zipmap(operator.scope_inst, model) is True:
        # ONNX's ZipMap takes float probabilities only: with a double input
        # skl2onnx's default (zipmap=True) would give a model that runtimes
        # refuse, so the probabilities that feed it are cast to float.
        probability_type = data_types.FloatTensorType
    operator.outputs[1].set_type(probability_type([n, num_columns]))


def _regressor_shapes(operator) -> None:
    _, data_types = _skl2onnx()
    _check_input(operator, data_types)
    model = operator.raw_operator
    if len(operator.outputs) != 1:
        raise RuntimeError(f"{type(model).__name__} has one output, got {len(operator.outputs)}")
    n = operator.inputs[0].get_first_dimension()
    # [N, n_outputs] always, also for 1-D targets: skl2onnx's regressors give [N, 1].
    operator.outputs[0].set_type(_output_float_type(operator, data_types)([n, model.network_.layer_sizes[-1]]))


def _nocl(options_holder, model) -> bool:
    """skl2onnx's option ``nocl`` (labels are class indices), from the scope or the container."""
    if _target_kind(model) == "multilabel":
        return False  # the label output is the indicator matrix either way
    return bool(options_holder.get_options(model, dict(nocl=False))["nocl"])


def _zipmap(options_holder, model):
    return options_holder.get_options(model, dict(zipmap=True))["zipmap"]


def _target_kind(model) -> str:
    """'binary', 'multiclass' or 'multilabel': what the classifier was fitted on (chainrule.sklearn sets it)."""
    kind = getattr(model, "_target_kind", None)
    if kind not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"{type(model).__name__} has no target kind chainrule.onnx knows ({kind!r})")
    return kind


def _container_graph(scope, container) -> _Graph:
    return _Graph(scope.get_unique_variable_name)


def _emit(graph: _Graph, scope, container) -> None:
    """Move the graph's initializers and nodes into skl2onnx's container."""
    for name, value in graph.initializers:
        if value.dtype == object:  # strings: numpy_helper would not keep them in raw_data
            container.add_initializer(name, TensorProto.STRING, list(value.shape), value.tolist())
        else:
            container.add_initializer(name, None, None, numpy_helper.from_array(value, name))
    for op, inputs, outputs, attributes in graph.nodes:
        container.add_node(op, inputs, outputs, name=scope.get_unique_operator_name(op), **attributes)


def _network_input(graph: _Graph, operator, network: Network) -> str:
    """The operator's input, cast to the network's dtype unless it has it already."""
    x = operator.inputs[0].full_name
    wanted = _TENSOR_TYPES[network.dtype.name]
    if operator.inputs[0].type.to_onnx_type().tensor_type.elem_type != wanted:
        x = graph.node("Cast", [x], "cast_input", to=wanted)
    return x


def _to_output(graph: _Graph, value: str, network: Network, output) -> None:
    """``value`` (in the network's dtype) as the declared output: a Cast, or an Identity when the types agree."""
    wanted = output.type.to_onnx_type().tensor_type.elem_type
    if wanted != _TENSOR_TYPES[network.dtype.name]:
        graph.node("Cast", [value], "", output=output.full_name, to=wanted)
    else:
        graph.node("Identity", [value], "", output=output.full_name)


def _convert_classifier(scope, operator, container) -> None:
    model = operator.raw_operator
    network = _fitted_network(model)
    dtype = network.dtype
    graph = _container_graph(scope, container)
    p = _forward(graph, network, _network_input(graph, operator, network))
    kind = _target_kind(model)
    classes, _ = _classes(model, _nocl(container, model))
    label_output, probability_output = operator.outputs
    # The labels of MLPClassifier._labels, the probabilities of predict_proba (chainrule/sklearn.py).
    if kind == "multilabel":
        # label = (p > 0.5) as int64, one column per label; probabilities = p.
        positive = graph.node("Greater", [p, graph.constant("half", np.array(0.5, dtype=dtype))], "positive")
        graph.node("Cast", [positive], "", output=label_output.full_name, to=TensorProto.INT64)
        probabilities = p
    elif kind == "multiclass":
        # label = classes_[argmax p] (the first of equal maxima, as np.argmax); probabilities = p.
        index = graph.node("ArgMax", [p], "class_index", axis=1, keepdims=0)
        graph.node("Gather", [graph.constant("classes", classes), index], "", output=label_output.full_name,
                   axis=0)
        probabilities = p
    elif len(classes) == 2:
        # One sigmoid output p = P(classes_[1]): label = classes_[p > 0.5]; probabilities [1 - p, p].
        positive = graph.node("Greater", [p, graph.constant("half", np.array(0.5, dtype=dtype))], "positive")
        index = graph.node("Cast", [positive], "positive_index", to=TensorProto.INT64)
        flat = graph.node("Reshape", [index, graph.constant("flat", np.array([-1], dtype=np.int64))], "class_index")
        graph.node("Gather", [graph.constant("classes", classes), flat], "", output=label_output.full_name, axis=0)
        negative = graph.node("Sub", [graph.constant("one", np.array(1, dtype=dtype)), p], "negative")
        probabilities = graph.node("Concat", [negative, p], "probabilities", axis=1)
    else:
        # Fitted on one class: every label is it, with probability 1 (predict_proba's ones).
        probabilities = graph.node("ConstantOfShape", [graph.node("Shape", [p], "shape")], "ones",
                                   value=numpy_helper.from_array(np.ones(1, dtype=dtype)))
        zeros = graph.node("ConstantOfShape", [graph.node("Shape", [p], "shape")], "zeros",
                           value=numpy_helper.from_array(np.zeros(1, dtype=np.int64)))  # [N, 1]
        flat = graph.node("Reshape", [zeros, graph.constant("flat", np.array([-1], dtype=np.int64))], "class_index")
        graph.node("Gather", [graph.constant("classes", classes), flat], "", output=label_output.full_name, axis=0)
    _to_output(graph, probabilities, network, probability_output)
    _emit(graph, scope, container)


def _convert_regressor(scope, operator, container) -> None:
    network = _fitted_network(operator.raw_operator)
    graph = _container_graph(scope, container)
    y = _forward(graph, network, _network_input(graph, operator, network))
    _to_output(graph, y, network, operator.outputs[0])
    _emit(graph, scope, container)


def register_converters() -> None:
    """Register chainrule's estimators with skl2onnx (done on import when skl2onnx is installed).

    After it, ``skl2onnx.to_onnx`` converts :class:`~chainrule.sklearn.MLPClassifier`,
    :class:`~chainrule.sklearn.LogisticRegression` and
    :class:`~chainrule.sklearn.MLPRegressor`, alone or as the last step of a
    pipeline. Classifiers take skl2onnx's options ``zipmap`` (True, the
    default: the probabilities as a list of {label: probability} dicts;
    False: the probability tensor; 'columns': one output per class), ``nocl``
    (labels are class indices 0..n_classes-1) and ``output_class_labels`` (an
    extra output holding ``classes_``). Calling it again does nothing more.

    Raises
    ------
    ImportError
        skl2onnx (or scikit-learn) is not installed.

    Examples
    --------
    >>> import onnxruntime
    >>> import skl2onnx
    >>> import chainrule.onnx
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from chainrule.sklearn import MLPClassifier
    >>> chainrule.onnx.register_converters()  # done already by the import: does nothing more
    >>> X = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 10.0], [3.0, 20.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(4,), solver="sgd",
    ...                                                      learning_rate_init=0.5, random_state=0)).fit(X, y)
    >>> model = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    >>> [output.name for output in model.graph.output]
    ['label', 'probabilities']
    >>> session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> labels, probabilities = session.run(None, {"X": X})
    >>> labels.tolist() == pipe.predict(X).tolist()
    True
    """
    global _REGISTERED
    skl2onnx, _ = _skl2onnx()
    from .sklearn import LogisticRegression, MLPClassifier, MLPRegressor

    if _REGISTERED:
        return
    # skl2onnx's own parser for classifiers (the one update_registered_converter
    # installs for a converter with a zipmap option), after a check that the
    # estimator is fitted: that parser reads classes_ before any of our code runs.
    from skl2onnx._parse import _parse_sklearn_classifier

    def parse_classifier(scope, model, inputs, custom_parsers=None):
        _fitted_network(model)
        return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)

    options = {"zipmap": [True, False, "columns"], "nocl": [False, True], "output_class_labels": [False, True]}
    for estimator in (MLPClassifier, LogisticRegression):
        skl2onnx.update_registered_converter(estimator, f"Chainrule{estimator.__name__}", _classifier_shapes,
                                             _convert_classifier, options=options, parser=parse_classifier)
    skl2onnx.update_registered_converter(MLPRegressor, "ChainruleMLPRegressor", _regressor_shapes,
                                         _convert_regressor)
    _REGISTERED = True


if importlib.util.find_spec("skl2onnx") is not None:
    register_converters()
