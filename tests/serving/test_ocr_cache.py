import sqlite3
import warnings

import pytest
from PIL import Image, ImageDraw

from hateful_memes.features import store as feature_store
from hateful_memes.features.cache import pixels_digest
from hateful_memes.serving import ocr_cache


class CountingEngine:
    """Stands in for an OCR engine: counts its loads and the pictures it reads, and 'reads' a
    picture's top-left pixel, so that a caption shows which picture it came from."""
    name = "counting"
    device = "cpu"

    def __init__(self, identity="counting: v1"):
        self.identity = identity
        self.loads = 0
        self.read_pictures = 0

    def load(self):
        self.loads += 1
        return self

    def read(self, images):
        self.read_pictures += len(images)
        return [f"{self.identity} read {image.getpixel((0, 0))}" for image in images]


def picture(i: int) -> Image.Image:
    image = Image.new("RGB", (24, 16), (i, 2 * i % 256, 7))
    ImageDraw.Draw(image).text((2, 2), str(i), fill=(255, 255, 255))
    return image


def keys_of(pictures):
    return [pixels_digest(p) for p in pictures]


def test_a_second_read_of_the_same_pictures_neither_loads_nor_calls_the_engine(tmp_path):
    pictures = [picture(i) for i in range(5)]
    engine = CountingEngine()
    first = ocr_cache.read_captions(pictures, keys_of(pictures), tmp_path, engine.identity,
                                    engine.load)
    assert engine.read_pictures == 5 and engine.loads == 1
    # Another process later: the same pictures, decoded anew.
    again = [picture(i) for i in range(5)]
    second = ocr_cache.read_captions(again, keys_of(again), tmp_path, engine.identity,
                                     engine.load)
    assert second == first and engine.read_pictures == 5 and engine.loads == 1
    # A new picture among them: only it is read.
    mixed = [picture(9), *again]
    assert ocr_cache.read_captions(mixed, keys_of(mixed), tmp_path, engine.identity,
                                   engine.load)[1:] == first
    assert engine.read_pictures == 6


def test_another_engine_identity_does_not_read_the_old_captions(tmp_path):
    pictures = [picture(i) for i in range(3)]
    old, new = CountingEngine("counting: v1"), CountingEngine("counting: v2")
    ocr_cache.read_captions(pictures, keys_of(pictures), tmp_path, old.identity, old.load)
    captions = ocr_cache.read_captions(pictures, keys_of(pictures), tmp_path, new.identity,
                                       new.load)
    assert new.read_pictures == 3 and all(c.startswith("counting: v2") for c in captions)
    assert ocr_cache.space(old.identity) != ocr_cache.space(new.identity)
    assert ocr_cache.space(old.identity).startswith("ocr/counting-")


def test_another_image_decoding_is_another_space(monkeypatch):
    # The key is of the file's bytes; what OCR reads is what they decode to.
    before = ocr_cache.space("counting: v1")
    monkeypatch.setattr(ocr_cache, "IMAGE_DECODING", ocr_cache.IMAGE_DECODING + " cmyk-icc")
    assert ocr_cache.space("counting: v1") != before


def test_a_damaged_entry_is_reported_read_again_and_repaired(tmp_path):
    pictures = [picture(i) for i in range(3)]
    keys = keys_of(pictures)
    engine = CountingEngine()
    first = ocr_cache.read_captions(pictures, keys, tmp_path, engine.identity, engine.load)
    wrong = first[1].upper()  # as long as the right one, valid UTF-8: only the checksum tells
    assert len(wrong) == len(first[1]) and wrong != first[1]
    with sqlite3.connect(tmp_path / feature_store.FILENAME) as db:
        db.execute("UPDATE vectors SET value = ? WHERE space = ? AND key = ?",
                   (wrong.encode(), ocr_cache.space(engine.identity), keys[1]))
    with pytest.warns(UserWarning, match=f"{keys[1]} is damaged"):
        assert ocr_cache.read_captions(pictures, keys, tmp_path, engine.identity,
                                       engine.load) == first
    assert engine.read_pictures == 4  # the damaged one alone, read again
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and stored again: intact now
        assert ocr_cache.lookup(tmp_path, engine.identity, keys) == dict(zip(keys, first))


def test_nothing_is_cached_without_a_folder_an_identity_or_a_key(tmp_path):
    pictures = [picture(i) for i in range(2)]
    for cache_dir, identity, keys in ((None, "counting: v1", keys_of(pictures)),
                                      (tmp_path, None, keys_of(pictures)),
                                      (tmp_path, "counting: v1", [None, None])):
        engine = CountingEngine(identity)
        for _ in range(2):
            ocr_cache.read_captions(pictures, keys, cache_dir, identity, engine.load)
        assert engine.read_pictures == 4, (cache_dir, identity, keys)
    assert ocr_cache.lookup(tmp_path, "counting: v1", keys_of(pictures)) == {}


def test_the_same_picture_twice_is_read_once_and_both_get_its_caption(tmp_path):
    pictures = [picture(1), picture(2), picture(1)]
    engine = CountingEngine()
    captions = ocr_cache.read_captions(pictures, keys_of(pictures), tmp_path, engine.identity,
                                       engine.load)
    assert engine.read_pictures == 2 and captions[0] == captions[2] != captions[1]


def test_captions_go_under_the_loaded_engines_own_identity(tmp_path):
    # Guessed before loading as one engine (a GPU asked for), loaded as another (none there):
    # what it reads is stored as what it is.
    pictures = [picture(i) for i in range(2)]
    engine = CountingEngine("counting: cpu")
    ocr_cache.read_captions(pictures, keys_of(pictures), tmp_path, "counting: cuda", engine.load)
    assert ocr_cache.lookup(tmp_path, "counting: cuda", keys_of(pictures)) == {}
    assert len(ocr_cache.lookup(tmp_path, "counting: cpu", keys_of(pictures))) == 2
    # Guessed wrong again: the loaded engine's own entries serve, nothing is read again.
    ocr_cache.read_captions(pictures, keys_of(pictures), tmp_path, "counting: cuda", engine.load)
    assert engine.read_pictures == 2


def test_an_engine_that_reads_too_few_captions_is_named(tmp_path):
    class Short(CountingEngine):
        def read(self, images):
            return super().read(images)[:-1]

    with pytest.raises(RuntimeError, match="'counting' read 1 captions for 2 pictures"):
        ocr_cache.read_captions([picture(1), picture(2)], [None, None], None, None,
                                Short().load)
