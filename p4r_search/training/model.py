"""A trained head → a standard sentence-transformers folder, with a model card of how it was made.

The folder is the base model's modules followed by `Dense` (identity activation, no bias, residual, weight W)
and `Normalize`: `SentenceTransformer(folder)` embeds a text as normalise(e + W e), e the base model's unit
embedding, exactly what `TrainedHead.apply` computes from cached base vectors. Every command takes the
folder through `--embedding-model`; an index built with it refuses profiles from another model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..encoder import resolve_model_path
from ..errors import ConfigError

CARD_FILE = "p4r_training.json"


def data_hash(paths: Iterable[Path]) -> str:
    """SHA-256 over the named files' bytes, in the order given (the data a model was trained on)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def save_encoder(base_model: str, weight: np.ndarray, out: Path, card: dict[str, Any]) -> Path:
    """Write the trained encoder to `out` (a new or empty folder), with `p4r_training.json` and a README."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" / "Writing model shards" bars in the CLI's output
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; give a new folder for the trained encoder")
    base = SentenceTransformer(resolve_model_path(base_model), device="cpu")
    dim = weight.shape[0]
    base_dim = base.get_embedding_dimension()
    if base_dim != dim:
        raise ConfigError(f"the head is {dim}-d but {base_model!r} embeds in {base_dim} dimensions")
    head = Dense(dim, dim, bias=False, activation_function=torch.nn.Identity(),
                 init_weight=torch.from_numpy(np.asarray(weight, dtype=np.float32).copy()), use_residual=True)
    model = SentenceTransformer(modules=[*base, head, Normalize()], device="cpu")
    model.save(str(out), create_model_card=False)
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card(card), encoding="utf-8")
    return out


def load_head(folder: Path) -> np.ndarray:
    """The head's W from a folder `save_encoder` wrote (its last Dense module's weight)."""
    from safetensors.numpy import load_file

    modules = json.loads((Path(folder) / "modules.json").read_text(encoding="utf-8"))
    dense = [m["path"] for m in modules if m["type"].endswith("Dense")]
    if not dense:
        raise ConfigError(f"{folder} has no trained head (no Dense module)")
    return load_file(str(next((Path(folder) / dense[-1]).glob("*.safetensors"))))["linear.weight"]


def read_card(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / CARD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def model_card(card: dict[str, Any]) -> str:
    losses = card.get("losses", [])
    shown = ", ".join(f"{x:.4f}" for x in losses)
    lines = [
        "---", "library_name: sentence-transformers", "tags: [sentence-transformers, p4r-search, persona4rec]", "---",
        "",
        "# A p4r-search trained encoder", "",
        (f"Base model: `{card.get('base_model')}`, with a residual linear head trained contrastively so that a "
         "user's profile (their history, built as at serving time) lies next to the persona of the item they "
         "chose next."),
        "", "| setting | value |", "|---|---|",
    ]
    for key in ("data", "data_hash", "split", "profile", "persona_vector", "hard_negatives", "head", "examples",
                "seconds"):
        if key in card:
            lines.append(f"| {key} | `{json.dumps(card[key])}` |")
    lines += ["", f"Mean training loss per epoch: {shown}.", "",
              "Use it with any p4r command: `--embedding-model THIS_FOLDER` (index and queries alike).", ""]
    return "\n".join(lines)
