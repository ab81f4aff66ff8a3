"""Pipeline: switching passes off, validation between passes, notes, summary; MAC counting."""
import pytest
import tensorflow as tf

from tfq8.graph import Editor
from tfq8.passes import (MAC_RULES, Pass, PassContext, PassError, PassResult, Pipeline,
                         count_macs, default_pipeline)

from tests.passes.conftest import BATCHES
from tests.passes.helpers import build, rand


def small_graph():
    def f(x):
        y = tf.nn.conv2d(x, rand(3, 3, 3, 8), 1, "SAME")
        y = tf.nn.relu(tf.compat.v1.nn.fused_batch_norm(
            y, rand(8, lo=.5, hi=1.5), rand(8), rand(8), rand(8, lo=.5, hi=1.5),
            is_training=False)[0])
        y = tf.nn.conv2d(y, rand(1, 1, 8, 4), 2, "VALID")
        return tf.nn.conv2d(y, rand(1, 1, 4, 4), 1, "VALID")
    return build(f, (None, 8, 8, 3))


def test_default_pipeline_runs_all_passes_and_reports(run_graph, rel_err):
    gd, ins, outs = small_graph()
    result = default_pipeline().run(gd, PassContext(ins, outs))
    assert list(result.results) == ["upcast_half", "dedupe", "conv1d", "dilated_conv",
                                    "transposed_conv",
                                    "grouped_conv", "dense_as_conv", "pad_into_conv",
                                    "fold_batchnorm", "move_strides", "fuse_activations",
                                    "equalize", "pair_channels"]
    # no repeated work, no 1-D, dilated, transposed or grouped convs, no Dense here; equalize
    # and pair_channels need tfq8.quantize's options
    idle = ("upcast_half", "equalize", "dedupe", "conv1d", "pad_into_conv", "dilated_conv",
            "transposed_conv",
            "grouped_conv", "dense_as_conv", "pair_channels")
    assert all(r.changed for name, r in result.results.items() if name not in idle)
    assert not any(result.results[name].changed for name in idle)
    assert not result.results["equalize"].changed   # needs calibration data (tfq8.quantize)
    x = {ins[0]: rand(2, 8, 8, 3)}
    assert rel_err(run_graph(result.graph_def, x, outs)[0], run_graph(gd, x, outs)[0]) <= 1e-5
    text = result.summary(before=gd, batch=2)
    assert "fold_batchnorm: changed" in text and "MACs (batch 2)" in text and "_FusedConv2D" in text


def test_passes_switch_off_by_name_like_rewriter_config():
    gd, ins, outs = small_graph()
    result = default_pipeline(disable={"move_strides", "fuse_activations"}).run(
        gd, PassContext(ins, outs))
    assert result.results["move_strides"] is None and result.results["fuse_activations"] is None
    assert "move_strides: disabled" in result.summary()
    assert not any(n.op.startswith("_Fused") for n in result.graph_def.node)
    with pytest.raises(ValueError, match="unknown pass name.*'nope'"):
        default_pipeline(disable={"nope"})


class _Breaks(Pass):
    name = "breaks"

    def run(self, graph_def, ctx):
        ed = Editor(graph_def, ctx.outputs)
        node = ed.node(ctx.outputs[0].split(":")[0])
        node.input[0] = "does_not_exist"
        return PassResult(ed.finish(), True, [])


class _Refuses(Pass):
    name = "refuses"

    def run(self, graph_def, ctx):
        notes = self.notes()
        notes.refuse("some/node", "because of a reason")
        return PassResult(graph_def, False, list(notes))


def test_validation_after_each_pass_names_the_pass():
    gd, ins, outs = small_graph()
    with pytest.raises(PassError, match="pass 'breaks'.*does_not_exist"):
        Pipeline([_Refuses(), _Breaks()]).run(gd, PassContext(ins, outs))
    with pytest.raises(PassError, match="pipeline's input"):
        Pipeline([_Refuses()]).run(gd, PassContext(ins, ["missing:0"]))


def test_refusals_are_collected_with_node_and_reason():
    gd, ins, outs = small_graph()
    result = Pipeline([_Refuses()]).run(gd, PassContext(ins, outs))
    (note,) = result.notes
    assert (note.pass_name, note.kind, note.node) == ("refuses", "refused", "some/node")
    assert "refused: some/node: because of a reason" in result.summary()
    with pytest.raises(ValueError, match="unique"):
        Pipeline([_Refuses(), _Refuses()])


def test_count_macs_by_hand():
    def f(x):
        y = tf.nn.conv2d(x, rand(3, 3, 3, 8), 2, "SAME")                       # 4×4×8 out
        d = tf.nn.depthwise_conv2d(y, rand(3, 3, 8, 2), [1, 1, 1, 1], "VALID")  # 2×2×16 out
        g = tf.reshape(d, [-1, 64])
        return tf.matmul(g, rand(64, 10))
    gd, _, _ = build(f, (None, 8, 8, 3))
    rep = count_macs(gd, batch=2)
    assert rep.per_node == {"Conv2D": 2 * 4 * 4 * 8 * 27, "depthwise": 2 * 2 * 2 * 16 * 9,
                            "MatMul": 2 * 10 * 64}
    assert rep.total == sum(rep.per_node.values()) and not rep.unknown
    assert count_macs(gd, batch=4).total == 2 * rep.total
    rules = dict(MAC_RULES, Relu=lambda node, ins, outs: 1)
    assert count_macs(gd, batch=2, rules=rules).total == rep.total


def test_frozen_keras_application_matches_keras(app, rel_err):
    """The frontend's frozen graph computes what the Keras model computes (1e-5)."""
    frozen = app.outputs("frozen")
    for b in BATCHES:
        keras_out = app.model(app.feeds[b], training=False).numpy()
        assert rel_err(frozen[b], keras_out) <= 1e-5, b
    names = {n.op for n in app.graphs["frozen"].node}
    assert not any(op.startswith("_") for op in names)  # Grappler made nothing non-portable
    assert not names & {"Rsqrt", "Squeeze", "ReadVariableOp", "VarHandleOp"}
