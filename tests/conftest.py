"""Shared fixtures for the graph, pass, frontend and export tests. Keep this file small."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def session_config():
    """Grappler off: the graph runs exactly as written (no runtime fusion of the reference)."""
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def _run_graph(graph_def, feeds, fetches):
    """Runs a GraphDef in a TF1 Session: {tensor name: array} → list of arrays. The reference
    executor for rewritten graphs (independent of tfq8.export)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph, config=session_config()) as sess:
        return sess.run(list(fetches), {graph.get_tensor_by_name(k): v for k, v in feeds.items()})


def _rel_err(a, b):
    """max|a − b| / max|b|: the error relative to the output's magnitude."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.fixture(scope="session")
def run_graph():
    return _run_graph


@pytest.fixture(scope="session")
def rel_err():
    return _rel_err
