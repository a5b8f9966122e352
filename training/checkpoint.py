"""Training checkpoints as safetensors (weights, optimizer state, RNG states) with JSON
metadata — no pickle, so a checkpoint handed around is as safe to load as a model file.

A resumed run continues bit for bit where the run stopped only if every random stream it
draws from continues too: the caller passes them in ``rng`` (name → state tensor, e.g. torch's
CPU generator, the CUDA one, the augmentation generator) and gets them back on load."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tagger.files.atomic import replace_atomically


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, rng: dict[str, torch.Tensor] | None = None) -> None:
    """``state``: JSON-able progress (epoch, best metric, history…); ``rng``: generator states
    (uint8 tensors from ``get_state()``), torch's CPU one is always saved as ``torch``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, slots in opt["state"].items():
        for name, value in slots.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{pid}.{name}"] = t.detach().cpu().contiguous()
    for name, value in {"torch": torch.get_rng_state(), **(rng or {})}.items():
        tensors[f"rng.{name}"] = value.detach().cpu().contiguous()
    meta = dict(state, param_groups=opt["param_groups"])
    with replace_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata={"training": json.dumps(meta)})


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restores the weights, the optimizer and torch's CPU RNG; returns the saved ``state`` with
    ``state["rng"]``: every saved generator state by name (checkpoints before RNG states were
    saved have only ``torch``)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["training"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    # load_state_dict moves NAdam's mu_product onto the parameters' device; torch keeps it on
    # the CPU when not capturable, and reads it with .item() every step: a host sync per
    # parameter per step on CUDA, in resumed runs only
    for group in optimizer.param_groups:
        if not group.get("capturable", False):
            for p in group["params"]:
                st = optimizer.state.get(p, {})
                if torch.is_tensor(st.get("mu_product")):
                    st["mu_product"] = st["mu_product"].cpu()
    meta["rng"] = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    torch.set_rng_state(meta["rng"]["torch"])
    return meta
