"""tfq8.graph: names, index, constant evaluation, validation, pattern matcher, editor, shapes."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tfq8.graph import (Any, Const, Editor, GraphError, GraphIndex, Op, canonical, get_attr,
                        infer_shapes, make_const, make_node, match, parse_input, parse_tensor,
                        set_attr, validate)

F32 = tf.float32


def _graph(*nodes):
    gd = graph_pb2.GraphDef()
    gd.node.extend(nodes)
    return gd


def _ph(name, shape=(None, 4)):
    return make_node("Placeholder", name, [], {"dtype": F32, "shape": tf.TensorShape(shape)})


def _chain():
    """x → Relu(r) → AddV2(a, r + c) → Identity(out);  ^r on out; c = Const."""
    return _graph(
        _ph("x"),
        make_const("c", np.arange(4, dtype=np.float32)),
        make_node("Relu", "r", ["x"], {"T": F32}),
        make_node("AddV2", "a", ["r", "c"], {"T": F32}),
        make_node("Identity", "out", ["a", "^r"], {"T": F32}),
    )


def test_names():
    assert parse_input("^a/b") == ("a/b", -1, True)
    assert parse_input("a:2") == ("a", 2, False)
    assert parse_input("a") == ("a", 0, False)
    assert parse_tensor("scope/x:1") == ("scope/x", 1)
    assert canonical("x") == "x:0"
    with pytest.raises(ValueError):
        parse_tensor("^x")


def test_attrs_round_trip():
    n = make_node("Conv2D", "c", [], {"T": F32, "strides": [1, 2, 2, 1], "padding": "SAME",
                                     "use_cudnn_on_gpu": True, "epsilon": 0.5})
    assert get_attr(n, "T") == F32
    assert get_attr(n, "strides") == [1, 2, 2, 1]
    assert get_attr(n, "padding") == "SAME"
    assert get_attr(n, "use_cudnn_on_gpu") is True
    assert get_attr(n, "epsilon") == 0.5
    assert get_attr(n, "missing", 7) == 7
    set_attr(n, "fused_ops", ["BiasAdd", "Relu"])
    assert get_attr(n, "fused_ops") == ["BiasAdd", "Relu"]
    with pytest.raises(KeyError):
        get_attr(n, "missing")


def test_index_consumers_and_order():
    idx = GraphIndex(_chain(), outputs=["out"])
    assert [e.node for e in idx.consumers("r")] == ["a"]
    assert idx.control_consumers("r") == ["out"]
    assert idx.data_inputs("out") == ["a:0"]
    assert idx.control_inputs("out") == ["r"]
    assert idx.is_output("out:0") and idx.node_is_output("out")
    assert not idx.has_only_consumer("r:0", "a")  # it also has a control consumer
    assert idx.has_only_consumer("a:0", "out")
    assert idx.topological_order() == ["x", "c", "r", "a", "out"]
    assert idx.is_sorted()


def test_topological_order_fixes_unsorted_graph_and_detects_cycles():
    gd = _chain()
    gd.node.reverse()
    idx = GraphIndex(gd)
    assert not idx.is_sorted()
    order = idx.topological_order()
    assert order.index("x") < order.index("r") < order.index("a") < order.index("out")
    cyc = _graph(make_node("Relu", "p", ["q"], {"T": F32}), make_node("Relu", "q", ["p"], {"T": F32}))
    with pytest.raises(GraphError, match="cycle"):
        GraphIndex(cyc).topological_order()


def test_const_value_of_const_and_of_constant_subgraph():
    # Rsqrt(v + eps) * gamma: what Keras BN leaves when Grappler did not fold it.
    v = np.array([1.0, 4.0], np.float32)
    gd = _graph(
        make_const("v", v), make_const("eps", np.float32(0.0)), make_const("g", np.float32(2.0)),
        make_node("AddV2", "ve", ["v", "eps"], {"T": F32}),
        make_node("Rsqrt", "rs", ["ve"], {"T": F32}),
        make_node("Mul", "k", ["rs", "g"], {"T": F32}),
        _ph("x", (None, 2)),
        make_node("Mul", "y", ["x", "k"], {"T": F32}),
    )
    idx = GraphIndex(gd)
    np.testing.assert_array_equal(idx.const_value("v"), v)
    assert idx.is_const("k:0") and not idx.is_const("y:0") and not idx.is_const("x")
    np.testing.assert_allclose(idx.const_value("k"), [2.0, 1.0], rtol=1e-6)
    assert idx.const_value("y") is None


def test_validate_accepts_good_graph_and_names_the_faulty_node():
    validate(_chain(), inputs=["x:0"], outputs=["out:0"])
    dangling = _chain()
    dangling.node[3].input[1] = "nope"
    with pytest.raises(GraphError, match="'a'.*no node 'nope'") as e:
        validate(dangling)
    assert e.value.node == "a"
    bad_dtype = _chain()
    bad_dtype.node[1].CopyFrom(make_const("c", np.arange(4, dtype=np.int32)))
    with pytest.raises(GraphError, match="wants float"):
        validate(bad_dtype)
    bad_index = _chain()
    bad_index.node[3].input[0] = "r:3"
    with pytest.raises(GraphError, match="has 1 output"):
        validate(bad_index)
    dup = _chain()
    dup.node.append(make_node("Relu", "r", ["x"], {"T": F32}))
    with pytest.raises(GraphError, match="duplicate"):
        validate(dup)
    with pytest.raises(GraphError, match="does not exist"):
        validate(_chain(), outputs=["missing:0"])
    with pytest.raises(GraphError, match="not a Placeholder"):
        validate(_chain(), inputs=["r:0"])
    cyc = _chain()
    cyc.node[2].input[0] = "a"
    with pytest.raises(GraphError, match="cycle"):
        validate(cyc)


# ---------------------------------------------------------------- pattern matcher
def _conv_graph(extra_consumer=False, control=False, const_filter=True):
    nodes = [_ph("x", (1, 4, 4, 2)),
             make_const("w", np.ones((1, 1, 2, 3), np.float32)) if const_filter
             else _ph("w", (1, 1, 2, 3)),
             make_const("b", np.ones(3, np.float32)),
             make_node("Conv2D", "conv", ["x", "w"], {"T": F32, "strides": [1, 1, 1, 1],
                                                       "padding": "VALID"}),
             make_node("BiasAdd", "bias", ["conv", "b"] + (["^x"] if control else []),
                       {"T": F32}),
             make_node("Relu", "act", ["bias"], {"T": F32})]
    if extra_consumer:
        nodes.append(make_node("Identity", "other", ["bias"], {"T": F32}))
    return _graph(*nodes)


PATTERN = Op({"Relu", "Relu6"}, "act", [
    Op("BiasAdd", "bias", [Op("Conv2D", "conv", [Any("x"), Const("w")]), Const("b")])])


def test_match_labels_nodes_tensors_and_values():
    idx = GraphIndex(_conv_graph())
    m = match(idx, "act", PATTERN)
    assert m
    assert m["conv"].name == "conv" and m["bias"].name == "bias"
    assert m.tensor("x") == "x:0" and m.tensor("w") == "w:0"
    np.testing.assert_array_equal(m.value("b"), np.ones(3))
    assert m.matched == ["act", "bias", "conv"]


@pytest.mark.parametrize("kwargs, reason", [
    ({"extra_consumer": True}, "other consumers: act, other"),
    ({"control": True}, "control inputs"),
    ({"const_filter": False}, "not a constant"),
])
def test_match_refusals_are_interesting_with_a_reason(kwargs, reason):
    m = match(GraphIndex(_conv_graph(**kwargs)), "act", PATTERN)
    assert not m and m.interesting
    assert reason in m.reason


def test_match_structural_mismatch_is_not_interesting():
    m = match(GraphIndex(_conv_graph()), "bias", PATTERN)  # BiasAdd is not Relu
    assert not m and not m.interesting
    pat = Op("BiasAdd", "bias", [Op("MatMul", "mm"), Const("b")])
    m = match(GraphIndex(_conv_graph(extra_consumer=True)), "bias", pat)
    assert not m and not m.interesting  # the op type differs: other consumers are irrelevant


def test_match_graph_output_intermediate_is_refused():
    m = match(GraphIndex(_conv_graph(), outputs=["bias:0"]), "act", PATTERN)
    assert not m and "graph output" in m.reason


def test_match_commutative():
    gd = _graph(_ph("x"), make_const("c", np.ones(4, np.float32)),
                make_node("Mul", "m", ["c", "x"], {"T": F32}))
    idx = GraphIndex(gd)
    assert not match(idx, "m", Op("Mul", "m", [Any("x"), Const("c")]))
    m = match(idx, "m", Op("Mul", "m", [Any("x"), Const("c")], commutative=True))
    assert m and m.tensor("x") == "x:0" and m.tensor("c") == "c:0"


# ---------------------------------------------------------------- editor
def test_editor_is_pure_keeps_order_and_prunes_dead_constants():
    gd = _conv_graph()
    before = gd.SerializeToString(deterministic=True)
    ed = Editor(gd, outputs=["act:0"])
    w2 = ed.add_const("conv/w2", np.full((1, 1, 2, 3), 2.0, np.float32), before="conv")
    ed.set_input("conv", 1, w2)
    ed.remove("bias")
    ed.rewire("bias:0", "conv:0")
    out = ed.finish()
    assert gd.SerializeToString(deterministic=True) == before  # input untouched
    names = [n.name for n in out.node]
    assert "w" not in names and "bias" not in names and "b" not in names  # dead consts pruned
    assert names.index("conv/w2") < names.index("conv") < names.index("act")
    assert GraphIndex(out).is_sorted()
    validate(out, ["x:0"], ["act:0"])


def test_editor_refuses_to_rewire_a_graph_output_and_keeps_outputs():
    ed = Editor(_conv_graph(), outputs=["bias:0"])
    with pytest.raises(GraphError, match="graph output"):
        ed.rewire("bias:0", "conv:0")
    ed.remove("act")
    out = ed.finish()
    assert "bias" in [n.name for n in out.node]


def test_editor_unique_names_and_unchanged_graph_round_trips():
    gd = _conv_graph()
    ed = Editor(gd)
    assert ed.unique_name("conv") == "conv_1" and ed.unique_name("fresh") == "fresh"
    assert not ed.changed
    assert ed.finish() == gd


def test_infer_shapes_with_concrete_batch():
    gd = _graph(_ph("x", (None, 8, 8, 3)),
                make_const("w", np.ones((3, 3, 3, 5), np.float32)),
                make_node("Conv2D", "c", ["x", "w"], {"T": F32, "strides": [1, 2, 2, 1],
                                                       "padding": "SAME"}))
    assert infer_shapes(gd)["c:0"] == (None, 4, 4, 5)
    assert infer_shapes(gd, batch=3)["c:0"] == (3, 4, 4, 5)
