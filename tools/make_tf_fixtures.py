"""Write tests/fixtures/tiny_vgg: a real TensorFlow checkpoint of musicnn's own ``vgg()`` graph
with 4 filters and random weights, and TensorFlow's outputs for a fixed input, so that the
checkpoint reader and the converter are tested against files TensorFlow itself wrote.

Run in the throwaway TensorFlow environment described in tools/musicnn_reference.py:

    /tmp/tfenv/bin/python tools/make_tf_fixtures.py tests/fixtures/tiny_vgg
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def fixed_input(n: int = 3, frames: int = 187, mels: int = 96) -> np.ndarray:
    """A deterministic log-mel-like batch [n, frames, mels] (TF layout: time, mel)."""
    t = np.arange(frames)[None, :, None]
    m = np.arange(mels)[None, None, :]
    k = np.arange(n)[:, None, None]
    return (1.5 + np.sin(0.07 * t * (k + 1) + 0.3 * m) + 0.5 * np.cos(0.11 * m * (k + 2))).astype(np.float32)


def main() -> None:
    import tensorflow as tf
    from musicnn import models

    out = sys.argv[1]
    os.makedirs(os.path.join(out, "MTT_vgg"), exist_ok=True)
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    tf.compat.v1.set_random_seed(3)
    x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
    is_training = tf.compat.v1.placeholder(tf.bool)
    y = tf.nn.sigmoid(models.vgg(x, is_training, 50, num_filters=4)[0])
    step = tf.compat.v1.train.get_or_create_global_step()  # an int64 variable, as real checkpoints hold
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        rng = np.random.RandomState(0)
        for v in tf.compat.v1.global_variables():  # make batch norm non-trivial
            if "moving_mean" in v.name or "beta" in v.name:
                sess.run(v.assign(rng.uniform(-0.5, 0.5, v.shape).astype(np.float32)))
            elif "moving_variance" in v.name or "gamma" in v.name:
                sess.run(v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32)))
        sess.run(step.assign(1234))
        tf.compat.v1.train.Saver().save(sess, os.path.join(out, "MTT_vgg") + "/", write_meta_graph=False,
                                        write_state=False)
        probs = sess.run(y, feed_dict={x: fixed_input(), is_training: False})
        variables = {v.op.name: list(v.shape.as_list()) for v in tf.compat.v1.global_variables()}
        first = sess.run(tf.compat.v1.global_variables()[0])
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"input": "tools/make_tf_fixtures.py:fixed_input()", "tensorflow": tf.__version__,
                   "probabilities": np.round(probs.astype(np.float64), 7).tolist(),
                   "variables": variables, "global_step": 1234,
                   "first_variable": {"name": tf.compat.v1.global_variables()[0].op.name,
                                      "values": np.asarray(first, np.float64).ravel()[:8].tolist()}},
                  f, indent=1)


if __name__ == "__main__":
    main()
