"""Convert the models of the musicnn 0.1.0 package (ISC license) to tagger model files: read its
TensorFlow checkpoints with our own reader, map each variable onto ShortChunkCNN (MTT_vgg,
MSD_vgg) or MusiCNN (MTT_musicnn, MSD_musicnn), and write a .safetensors file. The MSD models
have the same architectures as the MTT ones; only their weights and their 50 labels (the
Million Song Dataset's Last.fm tags) differ.

TensorFlow stores conv kernels as [time, mel, in, out] on NHWC tensors with H = time; tagger
uses NCHW with H = mel, so kernels become [out, in, mel, time] and the dense layer after a
flatten has its rows reordered from (time, mel, channel) to (channel, mel, time).
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from tagger.errors import ModelFileError
from tagger.model.cnn import ShortChunkCNN, musicnn_frontend, musicnn_vgg_config
from tagger.model.convert.tf_checkpoint import Checkpoint
from tagger.model.modelfile import ModelCard, save_model
from tagger.model.musicnn import MusiCNN, MusiCNNConfig
from tagger.model.vocab import (MSD_GROUP_ALIASES, MSD_GROUPS, MSD_TAGS, MTAT_GROUP_ALIASES, MTAT_GROUPS,
                                MTAT_TAGS)

ISC_NOTICE = (
    "Weights converted from musicnn 0.1.0. Copyright (c) Music Technology Group, Universitat "
    "Pompeu Fabra 2019. Code developed by Jordi Pons (www.jordipons.me). Permission to use, copy, "
    "modify, and/or distribute this software for any purpose with or without fee is hereby "
    "granted, provided that the above copyright notice and this permission notice appear in all "
    "copies. THE SOFTWARE IS PROVIDED \"AS IS\" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH "
    "REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN "
    "NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL "
    "DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN "
    "ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH "
    "THE USE OR PERFORMANCE OF THIS SOFTWARE."
)

MTAT = {"tags": MTAT_TAGS, "groups": MTAT_GROUPS, "aliases": MTAT_GROUP_ALIASES,
        "trained_on": "MagnaTagATune (train split of Pons et al.)", "test_set": "MagnaTagATune test set"}
MSD = {"tags": MSD_TAGS, "groups": MSD_GROUPS, "aliases": MSD_GROUP_ALIASES,
       "trained_on": "Million Song Dataset audio previews with their 50 most frequent Last.fm tags "
                     "(train split of Pons et al.)",
       "test_set": "Million Song Dataset test set (Last.fm tags)"}

# what each checkpoint becomes; metrics are the authors' test results (experiment.result)
SOURCES = {
    "MTT_vgg": {"name": "musicnn-vgg-mtt", "vocabulary": MTAT, "metrics": {"roc_auc": 0.9030, "pr_auc": 0.3823}},
    "MTT_musicnn": {"name": "musicnn-mtt", "vocabulary": MTAT, "metrics": {"roc_auc": 0.9067, "pr_auc": 0.3831}},
    "MSD_vgg": {"name": "musicnn-vgg-msd", "vocabulary": MSD, "metrics": {"roc_auc": 0.8768, "pr_auc": 0.2819}},
    "MSD_musicnn": {"name": "musicnn-msd", "vocabulary": MSD, "metrics": {"roc_auc": 0.8802, "pr_auc": 0.2891}},
}


def find_checkpoint(source: Path, model: str, workdir: Path) -> str:
    """The checkpoint prefix of ``model`` inside a musicnn wheel, an unpacked package, a
    site-packages folder, or the model folder itself; wheels are unpacked into ``workdir``."""
    source = source.expanduser()
    if not source.exists():
        raise ModelFileError(source, "no such file or folder",
                             "get the wheel with: pip download --no-deps musicnn==0.1.0")
    if source.is_file():
        try:
            with zipfile.ZipFile(source) as z:
                members = [n for n in z.namelist() if n.startswith(f"musicnn/{model}/.")]
                if not members:
                    raise ModelFileError(source, f"holds no musicnn/{model} checkpoint")
                z.extractall(workdir, members)
        except zipfile.BadZipFile:
            raise ModelFileError(source, "is neither a folder nor a wheel (zip) file") from None
        return f"{workdir / 'musicnn' / model}/"  # the files are named ".index", ".data-…"
    for candidate in (source, source / model, source / "musicnn" / model):
        if (candidate / ".index").is_file():
            return f"{candidate}/"
    raise ModelFileError(source, f"holds no {model} checkpoint (looked for {model}/.index)")


def _bn(ck: Checkpoint, tf_name: str, pt_name: str) -> dict[str, np.ndarray]:
    return {f"{pt_name}.weight": ck.read(f"{tf_name}/gamma"),
            f"{pt_name}.bias": ck.read(f"{tf_name}/beta"),
            f"{pt_name}.running_mean": ck.read(f"{tf_name}/moving_mean"),
            f"{pt_name}.running_var": ck.read(f"{tf_name}/moving_variance")}


def _conv(ck: Checkpoint, tf_name: str, pt_name: str, conv1d: bool = False) -> dict[str, np.ndarray]:
    kernel = ck.read(f"{tf_name}/kernel").transpose(3, 2, 1, 0)  # → [out, in, mel, time]
    if conv1d:  # the mid-end's [7, features, 1, out] kernels act as Conv1d over features
        kernel = kernel[:, 0]
    return {f"{pt_name}.weight": kernel, f"{pt_name}.bias": ck.read(f"{tf_name}/bias")}


def vgg_state(ck: Checkpoint) -> tuple[ShortChunkCNN, dict[str, np.ndarray]]:
    filters = ck.shape("1CNN/kernel")[-1]
    n_tags = ck.shape("dense/bias")[0]
    model = ShortChunkCNN(musicnn_frontend(), musicnn_vgg_config(n_tags, filters))
    state = _bn(ck, "batch_normalization", "input_bn")
    for k in range(1, 6):
        state |= _conv(ck, f"{k}CNN", f"blocks.{k - 1}.conv")
        state |= _bn(ck, f"batch_normalization_{k}", f"blocks.{k - 1}.bn")
    with torch.no_grad():  # the final feature map's (mel, time) size for the flatten order
        fmap = model.blocks(torch.zeros(1, 1, 96, musicnn_frontend().frames))
    _, c, f, t = fmap.shape
    dense = ck.read("dense/kernel")  # rows in TF flatten order (time, mel, channel)
    state["classifier.weight"] = dense.reshape(t, f, c, n_tags).transpose(3, 2, 1, 0).reshape(n_tags, -1)
    state["classifier.bias"] = ck.read("dense/bias")
    return model, state


def musicnn_state(ck: Checkpoint) -> tuple[MusiCNN, dict[str, np.ndarray]]:
    cfg = MusiCNNConfig(n_tags=ck.shape("dense_1/bias")[0],
                        timbral_filters=ck.shape("conv2d/bias")[0],
                        temporal_filters=ck.shape("conv2d_2/bias")[0],
                        midend_filters=ck.shape("conv2d_5/bias")[0],
                        backend_units=ck.shape("dense/bias")[0])
    model = MusiCNN(musicnn_frontend(), cfg)
    # TF named layers by creation order: input BN, 2 timbral, 3 temporal, 3 mid-end, 2 back-end
    state = _bn(ck, "batch_normalization", "input_bn")
    branches = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2"]
    for i, branch in enumerate(branches):
        state |= _conv(ck, "conv2d" if i == 0 else f"conv2d_{i}", f"{branch}.conv")
        state |= _bn(ck, f"batch_normalization_{i + 1}", f"{branch}.bn")
    for j, mid in enumerate(["mid1", "mid2", "mid3"]):
        state |= _conv(ck, f"conv2d_{5 + j}", f"{mid}.conv", conv1d=True)
        state |= _bn(ck, f"batch_normalization_{6 + j}", f"{mid}.bn")
    state |= _bn(ck, "batch_normalization_9", "pool_bn")
    state |= _bn(ck, "batch_normalization_10", "dense_bn")
    state["dense.weight"] = ck.read("dense/kernel").T
    state["dense.bias"] = ck.read("dense/bias")
    state["classifier.weight"] = ck.read("dense_1/kernel").T
    state["classifier.bias"] = ck.read("dense_1/bias")
    return model, state


def convert_musicnn(source: str | Path, out: str | Path, model: str = "MTT_vgg") -> ModelCard:
    """Convert musicnn's ``model`` checkpoint found in ``source`` into the model file ``out``."""
    if model not in SOURCES:
        raise ModelFileError(Path(str(source)), f"unknown musicnn model {model!r}",
                             f"choose one of {', '.join(SOURCES)}")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = find_checkpoint(Path(source), model, Path(tmp))
        ck = Checkpoint(prefix)
        try:
            net, state = (vgg_state if model.endswith("_vgg") else musicnn_state)(ck)
        except KeyError as e:
            raise ModelFileError(Path(prefix + ".index"),
                                 f"variable {e} missing: not a musicnn {model} checkpoint") from None
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    try:
        net.load_state_dict(tensors, strict=False)
    except RuntimeError as e:
        raise ModelFileError(Path(str(source)), f"checkpoint shapes do not fit {model}: {e}") from None
    missing = [k for k in net.state_dict() if k not in tensors and not k.endswith("num_batches_tracked")]
    if missing:
        raise ModelFileError(Path(str(source)), f"conversion left weights unset: {missing}")
    vocabulary = SOURCES[model]["vocabulary"]
    if len(vocabulary["tags"]) != net.config_dict()["n_tags"]:
        raise ModelFileError(Path(str(source)), f"{model} predicts {net.config_dict()['n_tags']} tags, "
                             f"not the {len(vocabulary['tags'])} of its vocabulary")
    card = ModelCard(
        name=SOURCES[model]["name"], architecture=net.architecture, config=net.config_dict(),
        frontend=net.frontend_config, tags=list(vocabulary["tags"]), groups=vocabulary["groups"],
        aliases=vocabulary["aliases"], chunk_samples=48000,
        provenance={"source": f"musicnn 0.1.0 (PyPI), checkpoint {model}",
                    "trained_on": vocabulary["trained_on"],
                    "conversion": "tagger models convert-musicnn: TF checkpoint read without "
                                  "TensorFlow, all CRC-32C verified; parity with musicnn's own "
                                  "TensorFlow outputs is tested (tests/test_parity.py)",
                    "authors": "Jordi Pons, Xavier Serra (Music Technology Group, UPF)"},
        metrics={"dataset": vocabulary["test_set"], "reported_by": "musicnn authors",
                 **SOURCES[model]["metrics"]},
        license="ISC. " + ISC_NOTICE)
    return save_model(net, out, card)
