"""The first pass, on Ray: read every input line once, check it, and group the reviews by item.

Every check runs before any persona is generated, as on one machine, so bad input costs no LLM call. The
input lines are read once and kept in Ray's object store (spilled to disk when larger than memory); the
units of work that come out are kept the same way for the second pass.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from .files import expand
from .units import (
    ITEM,
    REJECT,
    REVIEW,
    AssemblyRules,
    InputFile,
    as_error,
    assemble,
    duplicate_reviews,
    read_rows,
    reject,
)
from .workers import rows_of

ROWS_PER_PARTITION = 50_000


@dataclass
class Checked:
    units: Any  # a materialized Dataset of outcome rows (status todo / skipped / reject / ignored)
    counts: Counter = field(default_factory=Counter)  # units by status
    rejects: list[dict] = field(default_factory=list)  # in the order the single-machine loader meets them


def input_files(items: tuple[str, ...], reviews: tuple[str, ...]) -> list[InputFile]:
    files = [(ITEM, loc) for spec in items for loc in expand(spec)] + [(REVIEW, loc) for spec in reviews for loc in expand(spec)]
    return [InputFile(kind, number, loc) for number, (kind, loc) in enumerate(files)]


def check(files: list[InputFile], rules: AssemblyRules, *, skip_invalid: bool) -> Checked:
    sources = [{"kind": f.kind, "number": f.number, "uri": f.location.uri, "path": f.location.path,
                "shown": f.location.shown} for f in files]
    rows = ray.data.from_items(sources, override_num_blocks=len(sources)).flat_map(read_rows).materialize()
    partitions = max(1, min(200, rows.count() // ROWS_PER_PARTITION + 1))
    bad = [reject(r, r["error"]) for r in where(rows, "error", "", equal=False).take_all()]
    good = where(rows, "error", "")
    duplicates = (where(good, "kind", REVIEW).groupby("review_id", num_partitions=partitions)
                  .map_groups(_duplicates_of_group, batch_format="numpy").take_all())
    duplicates = [json.loads(d["reject"]) for d in duplicates]
    rules = replace(rules, dropped_reviews=frozenset((r["sort"][1], r["sort"][2]) for r in duplicates))
    units = (good.groupby("key", num_partitions=partitions)
             .map_groups(_assemble_group, fn_kwargs={"rules": rules}, batch_format="numpy").materialize())
    del rows, good  # the units hold what is needed from here on
    counts: Counter = Counter()
    found = bad + duplicates
    for tally in units.map_batches(_tally, batch_format="numpy").take_all():
        counts.update(json.loads(tally["counts"]))
        found += json.loads(tally["rejects"])
    found.sort(key=lambda r: tuple(r["sort"]))
    if found and not skip_invalid:
        raise as_error(found[0])
    return Checked(units, counts, found)


def where(dataset, column: str, value: str, *, equal: bool = True):
    """Rows whose `column` equals (or not) `value`. Unlike `Dataset.filter`, an emptied block keeps its
    schema, which the shuffle of a later groupby needs (it cannot concatenate a schema-less table)."""
    import pyarrow.compute as pc

    def keep(table):
        mask = pc.equal(table[column], value)
        return table.filter(mask if equal else pc.invert(mask))

    return dataset.map_batches(keep, batch_format="pyarrow", batch_size=None)


def _duplicates_of_group(batch: dict) -> dict:
    found = duplicate_reviews(rows_of(batch))
    return {"reject": [json.dumps(r) for r in found]}


def _assemble_group(batch: dict, rules: AssemblyRules) -> dict:
    out = assemble(rows_of(batch), rules)
    return {name: [row[name] for row in out] for name in ("status", "item_id", "item", "reviews", "input_hash", "reject")}


def _tally(batch: dict) -> dict:
    statuses = Counter(str(s) for s in batch["status"])
    rejects = [json.loads(r) for s, r in zip(batch["status"], batch["reject"]) if s == REJECT]
    return {"counts": [json.dumps(statuses)], "rejects": [json.dumps(rejects)]}
