"""`p4r eval …`: measure recommendation quality offline on user-level review data."""

from __future__ import annotations

from .app import cli


@cli.group("eval")
def evaluate() -> None:
    """Evaluate persona recommendation offline (the Persona4Rec protocols).

    `loo` is the leave-one-out next-item task on users' rated interactions;
    `retrieval` is review-to-item retrieval on data without user ids.
    Both write results.json and results.md under --out.
    """
