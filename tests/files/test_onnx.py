"""chainrule.onnx: exported models run in onnxruntime and give what chainrule gives.

A Network's model must reproduce ``predict``, and a pipeline converted by
skl2onnx must give the pipeline's ``predict`` labels exactly and its
``predict_proba`` probabilities, for every activation, both dtypes, and
multi-class, binary and multi-label targets.

"Equal within rtol" is the project's relative error (tests/reference.py's
relative_error: ||actual - expected|| / ||expected||), taken for each output
column and the largest kept: onnxruntime sums each product in its own order,
so an output that is a near-cancelling sum (a value close to 0 from terms of
size 1) differs in its last bits from chainrule's, which element by element
can be a large relative difference of a tiny number. The bounds are 1e-6 for
float32 and 1e-12 for float64.

The optional dependencies are in the ``test`` extra, so CI runs all of this.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
pytest.importorskip("sklearn")

from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import chainrule as cr  # noqa: E402
import reference  # noqa: E402
import chainrule.onnx as cro  # noqa: E402
from chainrule.sklearn import LogisticRegression, MLPClassifier, MLPRegressor  # noqa: E402

# The models are trained for a few epochs only: what is compared is the function, not its fit.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = {"float32": 1e-6, "float64": 1e-12}
HIDDEN = [name for name in cr.ACTIVATIONS if name != "softmax"]  # every elementwise activation
OUTPUTS = [("sigmoid", "bce"), ("softmax", "cce")] + [(name, "mse") for name in HIDDEN if name != "sigmoid"]


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def relative_difference(actual, expected):
    """The largest relative error (reference.relative_error) over the output columns."""
    actual = np.asarray(actual, dtype=np.float64).reshape(len(expected), -1)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return max(reference.relative_error(actual[:, j], expected[:, j]) for j in range(expected.shape[1]))


def assert_close(actual, expected, dtype):
    difference = relative_difference(actual, expected)
    assert difference <= RTOL[np.dtype(dtype).name], f"relative difference {difference:.3g} > {RTOL[dtype]}"


def features(num_records, num_features, dtype, seed=0):
    """Standard normal records, and a tenth scaled by 20 so that sigmoid and tanh saturate."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_records, num_features))
    X[: num_records // 10] *= 20
    return np.ascontiguousarray(X, dtype=dtype)


# -- Network ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output,loss", OUTPUTS)
def test_network_model_equals_predict(dtype, hidden, output, loss):
    net = cr.Network([7, 16, 9, 4], activation=hidden, output=output, loss=loss, dtype=dtype, seed=3)
    X = features(500, 7, dtype)
    model = cro.to_onnx(net)
    run = session(model)
    assert [i.name for i in run.get_inputs()] == ["X"] and [o.name for o in run.get_outputs()] == ["Y"]
    (Y,) = run.run(None, {"X": X})
    expected = net.predict(X)
    assert Y.dtype == expected.dtype and Y.shape == expected.shape
    assert_close(Y, expected, dtype)
    if output == "softmax":
        np.testing.assert_allclose(Y.sum(axis=1), 1, rtol=10 * RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_network_model_mixed_activations_and_shapes(dtype):
    # One name per hidden layer, no hidden layer at all, one output.
    for sizes, hidden, output, loss in [([5, 8, 8, 8, 3], ["relu", "tanh", "sigmoid"], "softmax", "cce"),
                                        ([5, 1], [], "sigmoid", "bce"),
                                        ([5, 6, 1], ["identity"], "identity", "mse")]:
        net = cr.Network(sizes, activation=hidden, output=output, loss=loss, dtype=dtype, seed=1)
        X = features(64, 5, dtype, seed=2)
        (Y,) = session(cro.to_onnx(net)).run(None, {"X": X})
        assert_close(Y, net.predict(X), dtype)


def test_network_model_holds_the_network_exactly():
    net = cr.Network([3, 4, 2], activation="tanh", output="identity", loss="mse", seed=0)
    model = cro.to_onnx(net)
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for layer, (weight, bias) in enumerate(zip(net.weights, net.biases), start=1):
        np.testing.assert_array_equal(arrays[f"W{layer}"], weight)  # bit for bit, the network's layout
        np.testing.assert_array_equal(arrays[f"b{layer}"], bias)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Tanh", "Gemm", "Identity"]
    assert model.producer_name == "chainrule" and model.producer_version == cr.__version__
    assert model.opset_import[0].version == cro.DEFAULT_OPSET
    # A copy: training the network afterwards does not change the model.
    X = features(10, 3, "float64")
    before = net.predict(X)
    net.weights[0][...] += 1
    (Y,) = session(model).run(None, {"X": X})
    assert_close(Y, before, "float64")


@pytest.mark.parametrize("net_dtype,io_dtype", [("float32", "float64"), ("float64", "float32")])
def test_network_model_dtype_option_casts_at_the_edges(net_dtype, io_dtype):
    net = cr.Network([6, 10, 3], activation="sigmoid", output="softmax", loss="cce", dtype=net_dtype, seed=5)
    X = features(200, 6, io_dtype)
    model = cro.to_onnx(net, dtype=io_dtype)
    (Y,) = session(model).run(None, {"X": X})
    assert Y.dtype == np.dtype(io_dtype)
    # The model computes in the network's dtype, as predict does on the converted input.
    assert_close(Y, net.predict(np.ascontiguousarray(X, dtype=net_dtype)), "float32")


@pytest.mark.parametrize("opset", [13, 15, cro.DEFAULT_OPSET])
def test_network_model_opsets_and_names(opset):
    net = cr.Network([4, 5, 3], activation="relu", output="softmax", loss="cce", seed=0)
    model = cro.to_onnx(net, opset=opset, input_name="features", output_name="proba")
    assert model.opset_import[0].version == opset
    X = features(20, 4, "float64")
    (Y,) = session(model).run(["proba"], {"features": X})
    assert_close(Y, net.predict(X), "float64")


def test_to_onnx_bad_arguments_name_the_argument():
    net = cr.Network([2, 3, 1], seed=0)
    with pytest.raises(TypeError, match="network must be a chainrule.Network, got MLPClassifier; for an estimator"):
        cro.to_onnx(MLPClassifier())
    with pytest.raises(TypeError, match="network must be a chainrule.Network, got ndarray"):
        cro.to_onnx(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'.*'int32'"):
        cro.to_onnx(net, dtype="int32")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'.*float16"):
        cro.to_onnx(net, dtype=np.float16)
    with pytest.raises(ValueError, match="dtype must be"):
        cro.to_onnx(net, dtype="no such type")
    with pytest.raises(ValueError, match="opset must be between 13 and"):
        cro.to_onnx(net, opset=12)
    with pytest.raises(TypeError, match="opset must be an integer, got str"):
        cro.to_onnx(net, opset="17")
    with pytest.raises(TypeError, match="input_name must be a non-empty str"):
        cro.to_onnx(net, input_name="")
    with pytest.raises(ValueError, match="input_name and output_name must differ"):
        cro.to_onnx(net, input_name="Y")


# -- save -----------------------------------------------------------------------


def test_save_writes_atomically_and_replaces(tmp_path):
    net = cr.Network([3, 4, 2], activation="relu", output="softmax", loss="cce", seed=0)
    path = tmp_path / "net.onnx"
    path.write_bytes(b"old")
    cro.save(net, path)  # a Network goes through to_onnx
    assert onnx.load(str(path)) == cro.to_onnx(net)
    model = cro.to_onnx(net, dtype="float32")
    cro.save(model, os.fsencode(path))  # bytes paths work too
    assert onnx.load(str(path)) == model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # no temporary file left
    cro.save(model, os.fsencode(tmp_path) + b"/\xff.onnx")  # a name that is not UTF-8
    assert b"\xff.onnx" in os.listdir(os.fsencode(tmp_path))
    os.remove(os.fsencode(tmp_path) + b"/\xff.onnx")
    # A symbolic link is replaced by the file, as Network.save does; what it pointed to stays.
    target = tmp_path / "target"
    target.write_bytes(b"kept")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    cro.save(model, link)
    assert not link.is_symlink() and onnx.load(str(link)) == model and target.read_bytes() == b"kept"


def test_save_leaves_the_old_file_whole_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(cro.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cro.save(cr.Network([2, 1], seed=0), path)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_save_bad_arguments(tmp_path):
    net = cr.Network([2, 1], seed=0)
    with pytest.raises(TypeError, match="model must be an onnx.ModelProto or a chainrule.Network, got str"):
        cro.save("net", tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="path must be a str, bytes or os.PathLike, got int"):
        cro.save(net, 3)
    with pytest.raises(ValueError, match="holds a NUL byte"):
        cro.save(net, str(tmp_path / "a\0b"))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        cro.save(net, tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        cro.save(net, fifo)
    with pytest.raises(FileNotFoundError):
        cro.save(net, tmp_path / "no such directory" / "x.onnx")


# -- scikit-learn pipelines through skl2onnx ------------------------------------


def targets(kind, num_records, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "multiclass":
        return rng.integers(0, 4, num_records) * 10 - 5  # integer labels, not 0..K-1
    if kind == "binary":
        return np.where(rng.random(num_records) < 0.4, "spam", "ham")  # string labels
    if kind == "binary-float":
        return (rng.random(num_records) < 0.5).astype(np.float64)  # 0.0 / 1.0, as loaders give
    if kind == "multilabel":
        return (rng.random((num_records, 3)) < 0.5).astype(np.int64)
    if kind == "one-class":
        return np.full(num_records, 7)
    raise AssertionError(kind)


KINDS = ["multiclass", "binary", "binary-float", "multilabel", "one-class"]
CLASSIFIERS = [pytest.param(lambda dtype, a=a: MLPClassifier((12, 6), activation=a, max_iter=15, random_state=0,
                                                             dtype=dtype), id=f"mlp-{a}")
               for a in ["logistic", "tanh", "relu", "identity"]]
CLASSIFIERS.append(pytest.param(lambda dtype: LogisticRegression(max_iter=15, random_state=0, dtype=dtype),
                                id="logistic-regression"))


def fitted_pipeline(estimator, X, y):
    return Pipeline([("scale", StandardScaler()), ("model", estimator)]).fit(X, y)


def pipeline_features(num_records, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.standard_normal((num_records, 5)) * 3 + 2, dtype=dtype)


def expected_labels(pipe, X):
    labels = np.asarray(pipe.predict(X))
    if labels.ndim == 0:  # MLPClassifier fitted on one class returns that class as a scalar
        labels = np.full(len(X), labels)
    return labels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", CLASSIFIERS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("input_dtype", ["float64", "float32"])
def test_classifier_pipeline_equals_predict_and_predict_proba(kind, make, dtype, input_dtype):
    X = pipeline_features(300, input_dtype)
    y = targets(kind, 300)
    pipe = fitted_pipeline(make(dtype), X, y)
    model = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    run = session(model)
    assert [o.name for o in run.get_outputs()] == ["label", "probabilities"]
    label, probabilities = run.run(None, {"X": X})
    expected = expected_labels(pipe, X)
    assert label.shape == expected.shape
    if kind == "binary":
        assert label.dtype == object  # string classes stay strings
    else:
        assert label.dtype == np.int64
    np.testing.assert_array_equal(label, expected)
    expected_proba = pipe.predict_proba(X)
    assert probabilities.dtype == np.dtype(input_dtype)  # skl2onnx's rule: the input's float type
    assert probabilities.shape == expected_proba.shape
    # The network computes in its dtype; a float32 input or output rounds to float32.
    assert_close(probabilities, expected_proba, "float32" if "float32" in (dtype, input_dtype) else "float64")


def test_the_issue_example_with_default_options():
    # skl2onnx.to_onnx(Pipeline([StandardScaler(), MLPClassifier()]), X[:1]) as issue 18 writes it: a
    # float64 input and skl2onnx's default zipmap=True, whose ZipMap takes float probabilities only.
    X = pipeline_features(200, "float64")
    y = targets("multiclass", 200)
    pipe = fitted_pipeline(MLPClassifier(max_iter=5, random_state=0), X, y)
    run = session(skl2onnx.to_onnx(pipe, X[:1]))
    assert [o.name for o in run.get_outputs()] == ["output_label", "output_probability"]
    label, dictionaries = run.run(None, {"X": X})
    np.testing.assert_array_equal(label, pipe.predict(X))
    classes = pipe[-1].classes_
    proba = np.array([[d[c] for c in classes] for d in dictionaries])
    assert_close(proba, pipe.predict_proba(X), "float32")


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_classifier_zipmap_columns_nocl_and_class_labels(kind):
    X = pipeline_features(120, "float32")
    y = targets(kind, 120)
    pipe = fitted_pipeline(MLPClassifier((8,), max_iter=10, random_state=0, dtype="float32"), X, y)
    model_step = pipe[-1]
    classes = model_step.classes_
    expected_proba = pipe.predict_proba(X)

    # zipmap='columns' makes skl2onnx stamp its newest opset (22 for skl2onnx 1.20), which onnxruntime
    # reads from 1.20 on; Python 3.9 has at most 1.19: ask for the opset chainrule.onnx uses itself.
    run = session(skl2onnx.to_onnx(pipe, X[:1], options={id(model_step): {"zipmap": "columns"}},
                                   target_opset={"": cro.DEFAULT_OPSET, "ai.onnx.ml": 3}))
    outputs = run.run(None, {"X": X})
    assert len(outputs) == 1 + len(classes)  # the label, then one column per class
    np.testing.assert_array_equal(outputs[0], expected_labels(pipe, X))
    assert_close(np.column_stack(outputs[1:]), expected_proba, "float32")

    if kind != "multilabel":  # nocl: labels are class indices
        run = session(skl2onnx.to_onnx(pipe, X[:1], options={id(model_step): {"zipmap": False, "nocl": True}}))
        label, _ = run.run(None, {"X": X})
        np.testing.assert_array_equal(classes[label], pipe.predict(X))

    if kind == "multiclass":  # output_class_labels: classes_ as one more output
        options = {id(model_step): {"zipmap": False, "output_class_labels": True}}
        run = session(skl2onnx.to_onnx(pipe, X[:1], options=options))
        label, proba, class_labels = run.run(None, {"X": X})
        np.testing.assert_array_equal(class_labels, classes)
        np.testing.assert_array_equal(label, pipe.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["logistic", "tanh", "relu", "identity"])
@pytest.mark.parametrize("num_outputs", [None, 3])
@pytest.mark.parametrize("input_dtype", ["float64", "float32"])
def test_regressor_pipeline_equals_predict(activation, dtype, num_outputs, input_dtype):
    X = pipeline_features(300, input_dtype)
    rng = np.random.default_rng(4)
    y = rng.standard_normal(300) if num_outputs is None else rng.standard_normal((300, num_outputs))
    pipe = fitted_pipeline(MLPRegressor((10, 5), activation=activation, max_iter=15, random_state=0, dtype=dtype),
                           X, y)
    run = session(skl2onnx.to_onnx(pipe, X[:1]))
    assert [o.name for o in run.get_outputs()] == ["variable"]
    (prediction,) = run.run(None, {"X": X})
    expected = pipe.predict(X)
    # [N, n_outputs] always: skl2onnx's regressors give [N, 1] for 1-D targets.
    assert prediction.shape == (300, 1 if num_outputs is None else num_outputs)
    assert prediction.dtype == np.dtype(input_dtype)
    assert_close(prediction, expected, "float32" if "float32" in (dtype, input_dtype) else "float64")


def test_estimator_alone_and_int64_input():
    X = np.random.default_rng(0).integers(-5, 5, (100, 4))
    y = targets("multiclass", 100)
    clf = MLPClassifier((6,), max_iter=10, random_state=0).fit(X, y)
    run = session(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}))
    label, proba = run.run(None, {"X": X})
    assert proba.dtype == np.float32  # skl2onnx's rule: float outputs for a non-double input
    np.testing.assert_array_equal(label, clf.predict(X))
    assert_close(proba, clf.predict_proba(X), "float32")


def test_converter_bad_input():
    X = pipeline_features(50, "float64")
    for unfitted in (MLPClassifier(), LogisticRegression(), MLPRegressor()):
        with pytest.raises(NotFittedError, match=f"This {type(unfitted).__name__} instance is not fitted yet"):
            skl2onnx.to_onnx(Pipeline([("scale", StandardScaler().fit(X)), ("model", unfitted)]), X[:1])
    clf = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, targets("multiclass", 50))
    with pytest.raises(ValueError, match="the input has 3 features, but MLPClassifier was fitted with 5"):
        skl2onnx.to_onnx(clf, X[:1, :3])
    from skl2onnx.common.data_types import StringTensorType

    with pytest.raises(TypeError, match="MLPClassifier takes a float, double or int64 tensor, got StringTensorType"):
        skl2onnx.to_onnx(clf, initial_types=[("X", StringTensorType([None, 5]))])
    # scikit-learn refuses to fit on such labels (continuous targets), but classes_ may be set by hand.
    soft = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, np.arange(50) % 3)
    soft.classes_ = np.array([0.5, 1.5, 2.5])
    with pytest.raises(ValueError, match=r"model.classes_ holds non-integer labels \[0.5, 1.5, 2.5\]"):
        skl2onnx.to_onnx(soft, X[:1], options={"zipmap": False})


def test_register_converters_is_idempotent():
    cro.register_converters()
    cro.register_converters()
    X = pipeline_features(40, "float64")
    reg = MLPRegressor((3,), max_iter=5, random_state=0).fit(X, X[:, 0])
    (prediction,) = session(skl2onnx.to_onnx(reg, X[:1])).run(None, {"X": X})
    assert_close(prediction, reg.predict(X), "float64")


# -- missing optional dependencies -------------------------------------------------


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_without_onnx_names_the_extra():
    # sys.modules[name] = None makes `import name` raise ImportError, as if it were not installed.
    result = run_python("import sys; sys.modules['onnx'] = None\n"
                        "try:\n    import chainrule.onnx\nexcept ImportError as e:\n    print(e)\n")
    assert result.returncode == 0, result.stderr
    assert "chainrule.onnx needs onnx: pip install 'chainrule[onnx]'" in result.stdout


def test_without_skl2onnx_export_works_and_register_names_the_extra():
    result = run_python("import sys; sys.modules['skl2onnx'] = None\n"
                        "import chainrule, chainrule.onnx\n"
                        "chainrule.onnx.to_onnx(chainrule.Network([2, 1], seed=0))\n"
                        "try:\n    chainrule.onnx.register_converters()\nexcept ImportError as e:\n    print(e)\n")
    assert result.returncode == 0, result.stderr
    assert "need skl2onnx: pip install 'chainrule[onnx]'" in result.stdout
