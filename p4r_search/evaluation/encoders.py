"""The encoders `p4r eval loo` compares: the base model, and a head trained on the training split for each
(profile source, persona vector kind), the way `p4r train encoder` trains one.

Training sees the leave-one-out training split only: each evaluated user's interactions before their
validation item, every interaction of the users who are not evaluated, and the reviews that may feed
personas (tests/test_training.py holds that no validation or test interaction gets in). Hard negatives are
the top candidates of the strongest generator, fitted on the same training matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..encoder import TextEncoder
from ..errors import ChoiceError
from ..io import LineReader
from ..models import ItemPersonas, Review
from ..profile import ProfileConfig
from ..training import HeadSettings, TrainedHead, TrainInputs, TrainSettings, build_training_set, fit, train_head
from .candidates import interaction_matrix, popularity_scores, top_k
from .data import EvalData
from .folds import Evaluator, Fold, make_folds
from .generators import scores, tune
from .split import leave_one_out, ordered_interactions, training_reviews
from .variants import TextTable

log = logging.getLogger(__name__)
HARD_NEGATIVES = 20  # the reranker chooses among the generator's top 20: train it to
# what `p4r train encoder` draws hard negatives from (SASRec, BPR left out: minutes of fitting, never the strongest
# on the development sets)
HARD_NEGATIVE_GENERATORS = ("popularity", "als", "ease", "rp3beta", "itemknn")
SPLITS = ("loo", "none")
NEGATIVES = ("generator", "none")


def training_inputs(fold: Fold, item_ids: Sequence[str], generator_scores: np.ndarray | None,
                    reviews: Sequence[Review], personas: Mapping[str, ItemPersonas]) -> TrainInputs:
    """The validation fold's training side: every row of its CF matrix (its users' histories before their
    validation item, then the other users' interactions), with the generator's top candidates as negatives."""
    histories = [*map(list, fold.histories), *map(list, fold.other_histories)]  # the rows of fold.train
    users = [*fold.users, *fold.other_users]
    negatives = {}
    if generator_scores is not None:
        tops = top_k(generator_scores, histories, HARD_NEGATIVES)
        negatives = {u: [item_ids[i] for i in row] for u, row in zip(users, tops)}
    return TrainInputs(sequences={u: [item_ids[i] for i in h] for u, h in zip(users, histories)},
                       reviews=reviews, personas=personas, hard_negatives=negatives)


def train_heads(inputs: TrainInputs, table: TextTable, sources: Iterable[str], kinds: Iterable[str],
                profile: ProfileConfig, head: HeadSettings, prior: float = 0.0,
                progress: Callable[[Iterable], Iterable] = lambda it: it) -> dict[tuple[str, str], TrainedHead]:
    """One head per (profile source, persona vector kind), trained on the table's cached base vectors."""
    vectors = {text: table.base[row] for text, row in table.rows.items()}
    heads = {}
    for source in sources:
        for kind in kinds:
            settings = TrainSettings(ProfileConfig(profile.last_n, profile.gamma, source=source), kind, head, prior)
            data = build_training_set(inputs.sequences, inputs.personas, inputs.reviews, profile=settings.profile,
                                      kind=kind, hard_negatives=inputs.hard_negatives, text_vectors=vectors,
                                      prior=prior)
            base = table.base[[table.rows[t] for t in data.texts]]
            heads[(source, kind)] = train_head(data, base, head, progress)
            log.info("trained head %s/%s on %d examples: loss %s", source, kind, len(data),
                     " → ".join(f"{x:.3f}" for x in heads[(source, kind)].losses[::max(1, head.epochs // 4)]))
    return heads


def split_inputs(data: EvalData, personas: Mapping[str, ItemPersonas], *, min_rating: float = 3.0,
                 split: str = "loo", seed: int = 0, negatives: str = "generator") -> tuple[TrainInputs, dict[str, Any]]:
    """What `p4r train encoder` trains on: the same training split and hard negatives as `p4r eval loo`.

    split "loo": training interactions and reviews only (validation and test held out, as in the eval);
    "none": everything (for production, once the evaluation has chosen the settings). Hard negatives:
    "generator": the top 20 of the strongest of `HARD_NEGATIVE_GENERATORS` (each tuned on validation
    NDCG@10, as in the eval; popularity with split "none"); "none": in-batch negatives only."""

    if split not in SPLITS:
        raise ChoiceError("split", split, SPLITS)
    if negatives not in NEGATIVES:
        raise ChoiceError("hard negatives", negatives, NEGATIVES)
    loo = leave_one_out(data.interactions, min_rating) if split == "loo" else None
    reviews = training_reviews(data.reviews, loo.held_out) if loo else list(data.reviews)
    known = {r.item_id for r in reviews}
    item_ids = sorted(i for i in personas if i in known)
    position = {item_id: n for n, item_id in enumerate(item_ids)}
    strongest, generator = "none", None
    if loo is not None and loo.test:
        fold, test = make_folds(loo, data, position)
        if negatives == "generator":
            validation = Evaluator(fold, item_ids, (10,))
            tuned = {kind: tune(kind, fold.training_data(), test.training_data(), fold.histories,
                                (len(fold.users), len(test.users)), lambda o: validation.value(o, "NDCG@10"),
                                HARD_NEGATIVES, seed) for kind in HARD_NEGATIVE_GENERATORS}
            strongest = max(tuned, key=lambda g: tuned[g].validation_metric)
            generator = scores(tuned[strongest].spec, fold.training_data(), fold.train.shape[0], seed)
    else:
        fold = everything(data, position)
        if negatives == "generator":
            strongest, generator = "popularity", popularity_scores(fold.train, fold.train.shape[0])
    inputs = training_inputs(fold, item_ids, generator, reviews, {i: personas[i] for i in item_ids})
    info = {"split": {"kind": split, "min_rating": min_rating, "users_held_out": len(loo.test) if loo else 0,
                      "training_interactions": int(fold.train.nnz), "training_reviews": len(reviews)},
            "hard_negatives": {"source": strongest, "per_example": HARD_NEGATIVES if generator is not None else 0}}
    return inputs, info


def train_on_split(data: EvalData, personas: Mapping[str, ItemPersonas], encoder: TextEncoder,
                   settings: TrainSettings, *, progress: Callable[[Iterable], Iterable] = lambda it: it,
                   **split) -> tuple[TrainedHead, dict[str, Any]]:
    """`split_inputs`, then `training.fit`: the head, and what it was trained on (for the model card)."""
    inputs, info = split_inputs(data, personas, **split)
    head, examples, seconds = fit(inputs, encoder, settings, progress)
    return head, {**info, "examples": len(examples), "steps": head.steps, "seconds": round(seconds, 1)}


def everything(data: EvalData, position: Mapping[str, int]) -> Fold:
    """A fold whose training side is every user's whole history (split "none")."""

    users = sorted(data.interactions)
    histories = [[position[i.item_id] for i in ordered_interactions(data.interactions[u]) if i.item_id in position]
                 for u in users]
    return Fold("all", [], [], [], interaction_matrix(histories, len(position)), users, histories)


def train_encoder(data_dir: Path, personas_path: Path, out: Path, *, settings: TrainSettings | None = None,
                  base_model: str | None = None, cache: Path | None = None, reader: LineReader | None = None,
                  progress: Callable[[Iterable], Iterable] = lambda it: it, **split) -> tuple[Path, TrainedHead, dict]:
    """Train on a data folder (items, reviews, interactions JSONL) and its personas; save a sentence-transformers
    folder at `out` with a model card. `split` takes `split_inputs`' options (split, min_rating, negatives,
    seed). Returns the folder, the head and the card."""
    from ..encoder import Encoder
    from ..personas.runner import read_personas
    from ..training import data_hash, save_encoder
    from .data import FILES, load_eval_data
    from .embedding_cache import CachedEncoder

    reader = reader or LineReader()
    settings = settings or TrainSettings()
    data = load_eval_data(Path(data_dir), reader)
    personas = read_personas(personas_path, reader)
    base = Encoder(base_model)
    head, info = train_on_split(data, personas, CachedEncoder(base, cache) if cache else base, settings,
                                progress=progress, seed=settings.head.seed, **split)
    card = {"base_model": base.model_name, "data": str(data_dir),
            "data_hash": data_hash([*(Path(data_dir) / f for f in FILES), Path(personas_path)]), **info,
            **settings.as_dict(), "losses": head.losses}
    return save_encoder(base.model_name, head.weight, Path(out), card), head, card
