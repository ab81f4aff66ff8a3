"""pair_channels: permutation spaces found (and refused) correctly; the permutation leaves FP32
outputs equal; the pairing lowers the u8-safe widening the quantizer will apply.

Tolerance: 1e-5 of the output magnitude (a permutation changes no value; TF may sum the
permuted channels in another order). Costs are checked against tfq8.calibration.qparams'
own widening (u8_pair_widening), an independent implementation of the same rule."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfq8.calibration.qparams import u8_pair_widening
from tfq8.passes import FuseActivations, PassContext, Pipeline
from tfq8.passes.pair_channels import PairChannels, pair_cost, pairing, permutation_spaces

from tests.passes.helpers import build, rand

RNG = np.random.default_rng(7)


def laplace(*shape):
    """Trained-like weights: most small, a few large (what pairing can exploit; uniformly
    random weights cannot be paired well)."""
    return RNG.laplace(size=shape).astype(np.float32)


def block_graph(final=tf.identity):
    """A MobileNetV2-like block and an SE gate: stream = conv(x); expand (1×1) → relu6 → zero
    pad → depthwise → bias → relu6 → project (1×1) → + stream; the sum × sigmoid(conv(mean))
    → maxpool → 1×1 conv and a 3×3 stride-2 conv."""
    def f(x):
        s = tf.nn.bias_add(tf.nn.conv2d(x, laplace(3, 3, 3, 16), 1, "SAME"), rand(16))
        e = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(s, laplace(1, 1, 16, 48), 1, "SAME"),
                                       rand(48)))
        e = tf.pad(e, [[0, 0], [1, 1], [1, 1], [0, 0]])
        d = tf.nn.relu6(tf.nn.depthwise_conv2d(e, laplace(3, 3, 48, 1), [1, 1, 1, 1], "VALID")
                        + rand(48))
        y = s + tf.nn.conv2d(d, laplace(1, 1, 48, 16), 1, "SAME")
        g = tf.sigmoid(tf.nn.conv2d(tf.reduce_mean(y, [1, 2], keepdims=True),
                                    laplace(1, 1, 16, 16), 1, "SAME"))
        z = tf.nn.max_pool2d(y * g, 2, 2, "SAME")
        a = tf.nn.conv2d(z, laplace(1, 1, 16, 8), 1, "SAME")
        b = tf.nn.conv2d(z, laplace(3, 3, 16, 8), 2, "SAME")
        return final(a + tf.image.resize(b, tf.shape(a)[1:3], "nearest"))
    gd, ins, outs = build(f, (None, 8, 8, 3))
    fused = Pipeline([FuseActivations()]).run(gd, PassContext(ins, outs)).graph_def
    return fused, ins, outs


def _run(run_graph, gd, ins, outs, x):
    return run_graph(gd, {ins[0]: x}, outs)[0]


def test_spaces_and_exact_permutation(run_graph, rel_err):
    gd, ins, outs = block_graph()
    spaces = permutation_spaces(gd, outs, PassContext(ins, outs).shapes(gd))
    ok = [s for s in spaces if s.reason is None]
    by_channels = {s.channels: s for s in ok}
    # the expand → relu6 → pad → depthwise → relu6 → project chain is one space
    chain = by_channels[48]
    assert len(chain.producers) == 1 and len(chain.depthwise) == 1 and len(chain.consumers) == 1
    assert len(chain.vectors) == 1        # the depthwise conv's bias
    # the stream: the stem conv, the project conv and the gate conv write it (add and SE mul
    # join them), the gate's squeeze conv, the expand conv and the two last convs read it
    stream = by_channels[16]
    assert len(stream.producers) == 3 and len(stream.consumers) == 4, stream
    before = gd.SerializeToString(deterministic=True)
    r = PairChannels().run(gd, PassContext(ins, outs, {"u8_safe_pairs": True}))
    assert gd.SerializeToString(deterministic=True) == before, "pass mutated its input"
    assert r.changed and r.rewrites
    for name, (b, a) in r.data["costs"].items():
        assert a < b, (name, b, a)
    x = rand(3, 8, 8, 3)
    assert rel_err(_run(run_graph, r.graph_def, ins, outs, x),
                   _run(run_graph, gd, ins, outs, x)) <= 1e-5


def test_off_without_the_option():
    gd, ins, outs = block_graph()
    r = PairChannels().run(gd, PassContext(ins, outs))
    assert not r.changed and r.graph_def is gd


@pytest.mark.parametrize("case", ["concat", "output", "channel_mean", "channel_pad",
                                  "grouped"])
def test_refusals(case):
    w1, w2 = laplace(1, 1, 3, 8), laplace(1, 1, 8, 4)

    def f(x):
        y = tf.nn.conv2d(x, w1, 1, "SAME")
        if case == "concat":
            return tf.nn.conv2d(tf.concat([y, y], -1), laplace(1, 1, 16, 4), 1, "SAME")
        if case == "output":
            return y, tf.nn.conv2d(y, w2, 1, "SAME")
        if case == "channel_mean":
            return tf.nn.conv2d(y, w2, 1, "SAME") + tf.reduce_mean(y, [3], keepdims=True)
        if case == "channel_pad":
            return tf.nn.conv2d(tf.pad(y, [[0, 0], [0, 0], [0, 0], [0, 2]]),
                                laplace(1, 1, 10, 4), 1, "SAME")
        # a grouped conv (2 groups of 4) reads the space: its input channels cannot move
        return tf.nn.conv2d(y, laplace(1, 1, 4, 4), 1, "SAME")
    gd, ins, outs = build(f, (None, 4, 4, 3), outputs=2 if case == "output" else 1)
    spaces = permutation_spaces(gd, outs, PassContext(ins, outs).shapes(gd))
    sp = next(s for s in spaces if s.channels in (0, 8) and "Conv2D" in s.name)
    assert sp.reason is not None, case
    want = {"concat": "ConcatV2", "output": "graph output", "channel_mean": "Mean",
            "channel_pad": "Pad", "grouped": "grouped"}[case]
    assert want in sp.reason, sp.reason


def _widening_cost(mats, perm):
    """Σ over consumers of mean f² by qparams.u8_pair_widening (HWIO with taps as H)."""
    return sum(float(np.mean(u8_pair_widening(w[:, perm][:, None]) ** 2)) for w in mats)


def test_pair_cost_matches_the_quantizers_widening():
    mats = [laplace(1, 12, 5).astype(np.float64), laplace(9, 12, 7).astype(np.float64)]
    for perm in (np.arange(12), RNG.permutation(12), RNG.permutation(12)):
        assert pair_cost(mats, perm) == pytest.approx(_widening_cost(mats, perm), rel=1e-6)


def test_pairing_finds_a_free_pairing_when_there_is_one():
    """Channels 2j and 2j + 1 are large with the same sign in every output (the original order
    widens a lot); pairs of opposite signs never widen, and there are as many negative
    channels as positive ones: the search must reach cost 1 per consumer, no widening at all."""
    c, out = 16, 6
    sign = np.repeat([1.0, -1.0], 2)[np.arange(c) % 4][:, None]   # + + − − + + − − …
    w = (sign * RNG.uniform(0.5, 1.0, (c, out)))[None]
    mats = [w, 0.5 * w[:, :, ::-1]]                               # two consumers
    assert pair_cost(mats, np.arange(c)) > 2.5
    perm = pairing(mats)
    assert sorted(perm.tolist()) == list(range(c))
    assert pair_cost(mats, perm) == pytest.approx(2.0)


@pytest.mark.parametrize("c", [5, 6, 7])
def test_pairing_is_a_permutation_and_never_worse(c):
    """Small spaces, against every pairing (brute force): the result is a permutation (an odd
    channel goes last, beside the kernels' zero padding), no worse than the original order and
    within 10 % of the best."""
    mats = [laplace(1, c, 4).astype(np.float64), laplace(4, c, 3).astype(np.float64)]
    perm = pairing(mats)
    assert sorted(perm.tolist()) == list(range(c))
    got = pair_cost(mats, perm)
    assert got <= pair_cost(mats, np.arange(c)) + 1e-12
    best = min(pair_cost(mats, np.asarray(p)) for p in itertools.permutations(range(c)))
    assert got <= best * 1.1, (got, best)
