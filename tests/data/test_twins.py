"""data/twins.py: a meme's twin features are the training labels of the other memes with its
caption, never its own; a checkpoint keeps them as plain data."""
import io

import numpy as np
import pytest
import torch

from conftest import labelled_meme
from hateful_memes.data.twins import FEATURES, CaptionTwins
from hateful_memes.labels import LABELS

TRAIN = [labelled_meme(1, "Look at them!", True, ("race",), ("mocking",)),
         labelled_meme(2, "look at them", False),
         labelled_meme(3, "LOOK at them...", False),
         labelled_meme(4, "a caption seen once", True, ("sex",), ("contempt",))]


def test_a_training_meme_is_never_its_own_twin():
    twins = CaptionTwins.from_memes(TRAIN)
    feats = twins.features("pc", [m.text for m in TRAIN], [m.id for m in TRAIN])
    assert feats.shape == (4, len(LABELS["pc"]), len(FEATURES))
    # Meme 4's caption is its own alone: nothing, although its own labels are in the table.
    assert not feats[3].any()
    race = LABELS["pc"].index("race")
    # Meme 1's twins (2 and 3) are both not hateful: it sees none of its own race label.
    np.testing.assert_array_equal(feats[0, race], [1, 0, 0])
    np.testing.assert_array_equal(feats[0, 0], [1, 0, 1])  # pc_empty: both twins have it
    # Meme 2 sees 1 (hateful, race) and 3 (not): half and half.
    np.testing.assert_allclose(feats[1, race], [1, 0.5, 0.5])


def test_a_new_meme_sees_every_training_meme_with_its_caption():
    twins = CaptionTwins.from_memes(TRAIN)
    feats = twins.features("attack", ["look, at THEM", "never seen"], ids=None)
    mocking = LABELS["attack"].index("mocking")
    np.testing.assert_allclose(feats[0, mocking], [1, 1 / 3, 1 / 3], rtol=1e-6)
    assert not feats[1].any()
    # An id that no training meme has excludes nothing.
    np.testing.assert_array_equal(twins.features("attack", ["look at them"], ["new-7"]),
                                  feats[:1])


def test_the_state_is_plain_data_that_torch_reads_without_running_code():
    twins = CaptionTwins.from_memes(TRAIN)
    buffer = io.BytesIO()
    torch.save({"twins": twins.state_dict()}, buffer)
    buffer.seek(0)
    back = CaptionTwins.from_state(torch.load(buffer, weights_only=True)["twins"])
    texts, ids = [m.text for m in TRAIN] + ["look at them"], [m.id for m in TRAIN] + [None]
    for task in LABELS:
        np.testing.assert_array_equal(back.features(task, texts, ids),
                                      twins.features(task, texts, ids))


def test_mismatched_state_is_an_error():
    state = CaptionTwins.from_memes(TRAIN).state_dict()
    state["ids"] = state["ids"][:2]
    with pytest.raises(ValueError, match="2 ids for 4 captions"):
        CaptionTwins.from_state(state)
    with pytest.raises(ValueError, match="1 ids for 2 captions"):
        CaptionTwins.from_memes(TRAIN).features("pc", ["a", "b"], [1])
