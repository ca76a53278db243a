"""SASRec as a candidate generator: the real torch model on small sequences whose next item is knowable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p4r_search.errors import ChoiceError
from p4r_search.evaluation.sasrec import _SASRec, SASRecParams, _score, sasrec_scores

N_ITEMS = 12
SMALL = {"hidden": 32, "epochs": 40, "dropout": 0.1, "max_len": 10, "batch_size": 32}


def _cyclic_sequences(n_users: int = 200) -> list[list[int]]:
    """Each user walks the items in order from their own start: the next item is always (last + 1) % N."""
    rng = np.random.default_rng(0)
    return [[(start + k) % N_ITEMS for k in range(int(rng.integers(3, 9)))]
            for start in rng.integers(0, N_ITEMS, size=n_users)]


def test_learns_the_next_item_of_an_ordered_walk():
    sequences = _cyclic_sequences()
    scores = sasrec_scores(sequences, N_ITEMS, len(sequences), SMALL, seed=1)
    assert scores.shape == (len(sequences), N_ITEMS) and scores.dtype == np.float32
    predicted = scores.argmax(axis=1)
    expected = np.array([(s[-1] + 1) % N_ITEMS for s in sequences])
    assert (predicted == expected).mean() >= 0.9


def test_order_matters_not_only_the_item_set():
    """A bag-of-items model cannot tell [0,1,2] from [2,1,0]; a sequential one predicts 3 after the first."""
    sequences = _cyclic_sequences()
    probes = [[0, 1, 2], [2, 1, 0]]
    scores = sasrec_scores(sequences + probes, N_ITEMS, len(sequences) + 2, SMALL, seed=1)
    assert scores[-2].argmax() == 3
    assert scores[-1].argmax() != 3


def test_first_n_users_only_empty_sequence_scores_zero_and_seed_is_reproducible():
    sequences = _cyclic_sequences(20) + [[]]
    params = {**SMALL, "epochs": 3}
    first = sasrec_scores(sequences, N_ITEMS, 5, params, seed=7)
    assert first.shape == (5, N_ITEMS)
    assert np.array_equal(first, sasrec_scores(sequences, N_ITEMS, 5, params, seed=7))
    assert not np.array_equal(first, sasrec_scores(sequences, N_ITEMS, 5, params, seed=8))
    everyone = sasrec_scores(sequences, N_ITEMS, len(sequences), params, seed=7)
    assert not everyone[-1].any()


def test_padding_and_batch_makeup_do_not_change_a_prediction():
    torch.manual_seed(0)
    model = _SASRec(N_ITEMS, SASRecParams(hidden=16, max_len=10))
    short, long = [3, 4], [1, 2, 3, 4, 5, 6, 7]
    alone = _score(model, [short], max_len=10)
    together = _score(model, [long, short], max_len=10)
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-5)


def test_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sasrec_scores(_cyclic_sequences(10), N_ITEMS, 10, {**SMALL, "epochs": 1}, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_parameter_is_a_choice_error_naming_the_allowed_ones():
    with pytest.raises(ChoiceError, match="dropout"):
        sasrec_scores([[0, 1]], N_ITEMS, 1, {"dropuot": 0.3}, seed=0)
