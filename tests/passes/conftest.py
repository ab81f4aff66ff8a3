"""Keras applications with non-trivial batch norms, frozen once per session, and the graph after
each FP32 pass. Pass tests compare consecutive stages at batch 1 and 4."""
import dataclasses
import zlib
from typing import Dict

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import session_config
from tfq8.frontend import load_model
from tfq8.passes import FoldBatchNorm, FuseActivations, MoveStrides, PassContext, Pipeline

# Small inputs keep CI fast; 75×75 is InceptionV3's minimum.
APPS = {"ResNet50": (96, 96, 3), "ResNet50V2": (96, 96, 3), "MobileNetV2": (96, 96, 3),
        "InceptionV3": (75, 75, 3)}
BATCHES = (1, 4)
STAGES = ("frozen", "fold_batchnorm", "move_strides", "fuse_activations")


def randomize(model, seed=0):
    """Random BN statistics/affine and biases, so that folding them is visible in the output."""
    import keras
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, c))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.1, c))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return model


@dataclasses.dataclass
class App:
    name: str
    model: object
    frozen: object
    ctx: PassContext
    graphs: Dict[str, object]
    results: Dict[str, object]
    feeds: Dict[int, np.ndarray]
    _outputs: Dict[str, Dict[int, np.ndarray]] = dataclasses.field(default_factory=dict)

    def outputs(self, stage):
        """{batch: logits} of the graph after ``stage`` (one Session for both batches)."""
        if stage not in self._outputs:
            graph = tf.Graph()
            with graph.as_default():
                tf.graph_util.import_graph_def(self.graphs[stage], name="")
            x = graph.get_tensor_by_name(self.frozen.inputs[0].tensor)
            y = graph.get_tensor_by_name(self.frozen.outputs[0].tensor)
            with tf.compat.v1.Session(graph=graph, config=session_config()) as sess:
                self._outputs[stage] = {b: sess.run(y, {x: v}) for b, v in self.feeds.items()}
        return self._outputs[stage]


@pytest.fixture(scope="session", params=list(APPS))
def app(request):
    import keras
    name = request.param
    shape = APPS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=shape,
                                              classifier_activation=None)
    randomize(model)
    frozen = load_model(model)
    ctx = PassContext.for_model(frozen)
    graphs, results = {"frozen": frozen.graph_def}, {}
    g = frozen.graph_def
    for p in (FoldBatchNorm(), MoveStrides(), FuseActivations()):
        r = Pipeline([p]).run(g, ctx)  # validates before and after
        results[p.name] = r.results[p.name]
        g = graphs[p.name] = r.graph_def
    rng = np.random.default_rng(7)
    feeds = {b: rng.uniform(-1, 1, (b,) + shape).astype(np.float32) for b in BATCHES}
    yield App(name, model, frozen, ctx, graphs, results, feeds)
    keras.backend.clear_session()


@pytest.fixture(autouse=True, scope="module")
def _module_seeded_rand(request):
    """helpers.rand draws from one generator; reseed it per test file (from the file's name),
    so a file's data does not depend on which other files ran before it or how many numbers
    their tests drew — adding a test elsewhere cannot shift a tolerance-sensitive test here."""
    from tests.passes import helpers
    helpers.RNG = np.random.default_rng(zlib.crc32(request.module.__name__.encode()))
    yield
