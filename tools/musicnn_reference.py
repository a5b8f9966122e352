"""Reference outputs and peer timings from musicnn 0.1.0's own TensorFlow code.

Run it OUTSIDE the project, in a throwaway environment (see the docstring of main()), e.g.:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install 'tensorflow-cpu==2.15.1' 'keras==2.15.*' 'librosa==0.11.*' 'numpy==1.26.*'
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv/bin/python tools/musicnn_reference.py tests/fixtures/musicnn_reference.json [CLIP.mp3 ...]

It writes, per signal of tools/parity_signals.py (and per extra audio file given), musicnn's
per-patch probabilities for its four models (MTT_vgg, MTT_musicnn, MSD_vgg, MSD_musicnn), each
model's labels, and how long musicnn's extractor took per file. musicnn hides a failed restore
in a bare ``except:``, so every taggram is also recomputed
here with an explicit restore and must agree, or the script stops.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity_signals  # noqa: E402

MODELS = ["MTT_vgg", "MTT_musicnn", "MSD_vgg", "MSD_musicnn"]


def explicit_taggram(path: str, model: str) -> np.ndarray:
    import musicnn
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import extractor, models

    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y = models.define_model(x, is_training, model, 50)[0]
        prob = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, os.path.dirname(musicnn.__file__) + "/" + model + "/")
        batch, _ = extractor.batch_data(path, 187, 187)
        return sess.run(prob, feed_dict={x: batch, is_training: False})


def main() -> None:
    from musicnn.extractor import extractor

    out_path = sys.argv[1]
    extra = sys.argv[2:]
    result = {"generator": "tools/parity_signals.py", "sample_rate": parity_signals.SR,
              "framing": "musicnn: log-mel of the whole signal, then non-overlapping 187-frame patches",
              "versions": {}, "signals": {}, "files": {}, "timing_s": {}, "labels": {}}
    import librosa
    import tensorflow as tf
    result["versions"] = {"tensorflow": tf.__version__, "librosa": librosa.__version__,
                          "numpy": np.__version__, "musicnn": "0.1.0"}
    with tempfile.TemporaryDirectory() as tmp:
        items = []
        for name in parity_signals.SIGNALS:
            path = os.path.join(tmp, name + ".wav")
            sf.write(path, parity_signals.pcm16(parity_signals.SIGNALS[name]()), parity_signals.SR,
                     subtype="PCM_16")
            items.append(("signals", name, path))
        items += [("files", os.path.basename(p), p) for p in extra]
        for group, name, path in items:
            result[group][name] = {}
            for model in MODELS:
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    taggram, labels = extractor(path, model=model, input_length=3,
                                                input_overlap=False, extract_features=False)
                    times.append(time.perf_counter() - t0)
                check = explicit_taggram(path, model)
                if not np.allclose(check, taggram, atol=1e-6):
                    raise SystemExit(f"{model} on {name}: extractor output differs from an explicit "
                                     "restore; musicnn probably ran with random weights")
                result[group][name][model] = np.round(taggram.astype(np.float64), 6).tolist()
                result["labels"][model] = list(labels)
                result["timing_s"].setdefault(model, {})[name] = round(statistics.median(times), 3)
                print(f"{name:>24} {model:<12} patches={taggram.shape[0]} "
                      f"median {statistics.median(times):.2f}s", flush=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
