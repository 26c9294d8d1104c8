"""The int8 rewrite of ``un-export --int8`` (:mod:`un_fairseq.export.int8`) against a float64
reference of its equations: exact on every x86 CPU (the integer product must not saturate on
AVX2-only kernels) and batch-invariant (a row's result does not depend on the other rows)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import cpu_features

ort = pytest.importorskip("onnxruntime")
int8 = pytest.importorskip("un_fairseq.export.int8")


def reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The module's equations in float64, written from its docstring: per-row activation
    scales (127 levels a side, zero point 128), per-output-channel 7-bit weights (63 a side)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    s_x = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-30) / 127
    q_x = np.clip(np.round(x / s_x), -127, 127)  # numpy rounds half to even, as ONNX Round
    s_w = np.abs(w).max(axis=0) / 63
    q_w = np.round(w / s_w)
    return (q_x @ q_w) * s_w * s_x


def _matmul_model(w: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "rows", w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "rows", w.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def saturating():
    """Inputs on which 8-bit weights would overflow AVX2's int16 pair sums: every row has
    many entries at its maximum, lined up with weights at their column's maximum."""
    rng = np.random.default_rng(0)
    k, n = 96, 40
    x = rng.normal(size=(3, 5, k)).astype(np.float32)
    x[..., ::2] = np.abs(x).max(axis=-1, keepdims=True)  # q_x = 255 at every even k
    x[1, 2] = 0.0  # an all-zero row
    w = rng.normal(size=(k, n)).astype(np.float32)
    w[::2] = np.abs(w).max(axis=0)  # q_w = its maximum at every even k
    return x, w


def test_int8_rewrite_is_the_integer_math_on_this_cpu(saturating):
    x, w = saturating
    model = _matmul_model(w)
    assert int8.quantize_model(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulIntegerToFloat" in ops and "MatMul" not in ops
    assert "w" not in {i.name for i in model.graph.initializer}  # the float weight is gone
    got = _run(model, x)
    want = reference(x, w)
    assert np.all(got[1, 2] == 0)
    # float32 rounding of a few scale multiplies; a saturated int16 sum would be off by far more
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                               err_msg=f"cpu: {cpu_features()}")


def test_int8_rewrite_is_batch_invariant(saturating):
    """Each row alone gives bit for bit what it gives among the others."""
    x, w = saturating
    model = _matmul_model(w)
    int8.quantize_model(model)
    together = _run(model, x)
    for b in range(x.shape[0]):
        for r in range(x.shape[1]):
            alone = _run(model, x[b:b + 1, r:r + 1])
            assert np.array_equal(alone[0, 0], together[b, r]), (b, r, cpu_features())
