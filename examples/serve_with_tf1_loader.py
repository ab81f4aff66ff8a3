"""Run a tfq8 SavedModel the way TF Serving loads it (the TF1 SavedModel loader + a Session).

    python examples/serve_with_tf1_loader.py /tmp/resnet50_int8
"""
import sys

import numpy as np
import tensorflow as tf

import tfq8  # noqa: F401  (registers the Tfq8* ops; TF Serving links them statically instead)


def main(path):
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        (in_name, in_info), = sig.inputs.items()
        shape = [d.size if d.size > 0 else 1 for d in in_info.tensor_shape.dim]
        x = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
        fetches = {k: v.name for k, v in sig.outputs.items()}
        out = sess.run(fetches, {in_info.name: x})
        for k, v in out.items():
            print(f"{in_name} {shape} -> {k} {v.shape} {v.dtype}")


if __name__ == "__main__":
    main(sys.argv[1])
