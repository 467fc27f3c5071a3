import numpy as np
import pytest

from hateful_memes.data.annotations import Meme
from hateful_memes.data.crossval import caption_key, group_folds


def _memes(texts):
    return [Meme(id=i, img=f"img/{i}.png", text=t) for i, t in enumerate(texts)]


def test_caption_key_ignores_case_punctuation_and_spacing():
    assert caption_key("Jew mad?  get FUHRERIOUS!") == caption_key("jew mad get fuhrerious")


def test_same_caption_same_fold_and_folds_balanced():
    rng = np.random.default_rng(0)
    texts = [f"caption {rng.integers(300)}" + ("!" if rng.random() < 0.5 else "")
             for _ in range(2000)]
    fold_of = group_folds(_memes(texts), 5, seed=1)
    by_key = {}
    for text, f in zip(texts, fold_of):
        by_key.setdefault(caption_key(text), set()).add(int(f))
    assert all(len(f) == 1 for f in by_key.values())
    counts = np.bincount(fold_of, minlength=5)
    assert counts.min() > 0.7 * counts.max()
    assert (group_folds(_memes(texts), 5, seed=1) == fold_of).all()
    assert not (group_folds(_memes(texts), 5, seed=2) == fold_of).all()


def test_too_few_captions():
    with pytest.raises(ValueError, match="distinct captions"):
        group_folds(_memes(["a", "a", "b"]), 3)
    with pytest.raises(ValueError, match="at least 2"):
        group_folds(_memes(["a", "b"]), 1)
