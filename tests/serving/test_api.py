import io
import sqlite3
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from hateful_memes import MemeClassifier
from hateful_memes.data.annotations import Meme, read_annotations
from hateful_memes.features import store as feature_store
from hateful_memes.features.cache import ImageReadError, file_digest, pixels_digest
from hateful_memes.labels import LABELS
from hateful_memes.scoring.decision import decide
from hateful_memes.serving import api


class FakeReader:
    """Stands in for OCR where a test is about which memes get read, not how well."""
    name = "fake"

    def __init__(self):
        self.calls = []

    def read(self, images):
        self.calls.append(len(images))
        return [f"read {i}" for i in range(len(images))]


@pytest.fixture(scope="module")
def test_memes(demo_data):
    return read_annotations(demo_data / "annotations" / "test.jsonl")


def test_public_api_is_imported_lazily():
    code = ("import sys, hateful_memes; assert 'torch' not in sys.modules; "
            "from hateful_memes import MemeClassifier; assert 'torch' in sys.modules; "
            "print(MemeClassifier.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hateful_memes.serving.api"


def test_images_in_memory_score_as_the_annotation_file_path(classifier, test_memes, demo_data,
                                                            feature_cache):
    # One scoring path: PIL images through the encoders' own transforms give the scores the
    # file path (cached features, as predict.py --input) gives.
    from_files = classifier.scores(test_memes, demo_data, cache_dir=feature_cache)
    results = classifier.predict(images=[demo_data / m.img for m in test_memes],
                                 texts=[m.text for m in test_memes])
    assert len(results) == len(test_memes)
    for task, field in (("hate", "pred_hate"), ("pc", "pred_pc"), ("attack", "pred_attack")):
        got = np.array([[getattr(r, field)[label] for label in LABELS[task]] for r in results])
        np.testing.assert_allclose(got, from_files[task], atol=1e-5)
    assert all(r.ocr is False for r in results)
    assert [r.text for r in results] == [m.text for m in test_memes]


def test_paths_bytes_and_pil_images_give_the_same_result(classifier, test_memes, demo_data):
    path = demo_data / test_memes[0].img
    kinds = [path, str(path), path.read_bytes(), Image.open(path),
             Image.open(path).convert("RGBA")]
    results = classifier.predict(images=kinds, texts=[test_memes[0].text] * len(kinds))
    first = results[0].to_dict()
    for r in results[1:]:
        for field in ("pred_hate", "pred_pc", "pred_attack"):
            for label, score in first[field].items():
                assert r.to_dict()[field][label] == pytest.approx(score, abs=1e-5)


def test_open_keyed_keys_a_file_its_bytes_alike_and_a_picture_by_its_pixels(tmp_path):
    path = tmp_path / "meme.png"
    Image.new("RGB", (24, 16), (3, 6, 7)).save(path)
    data = path.read_bytes()
    pictures = {}
    for item in (path, str(path), data, bytearray(data)):
        pictures[type(item)], key = api.open_keyed(item)
        assert key == file_digest(path)  # as train.py and predict.py --input key the file
        assert pictures[type(item)].tobytes() == api.open_image(path).tobytes()
    decoded = api.open_image(path)
    picture, key = api.open_keyed(decoded)
    assert key == pixels_digest(decoded) != file_digest(path)
    assert picture.tobytes() == decoded.tobytes()
    with pytest.raises(ImageReadError, match="nowhere.png: image file not found"):
        api.open_keyed(tmp_path / "nowhere.png")
    with pytest.raises(ImageReadError, match=f"{tmp_path}: cannot read image file"):
        api.open_keyed(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: empty file"):
        api.open_keyed(tmp_path / "empty.png")


def test_labels_are_the_decision_over_the_scores(classifier, test_memes, demo_data):
    results = classifier.predict(images=[demo_data / m.img for m in test_memes],
                                 texts=[m.text for m in test_memes])
    for task in ("pc", "attack"):
        scores = np.array([[getattr(r, f"pred_{task}")[label] for label in LABELS[task]]
                           for r in results])
        assert [r.labels[task] for r in results] == [list(d) for d in decide(task, scores)]
        empty = LABELS[task][0]
        for r in results:
            assert r.labels[task] and (r.labels[task] == [empty] or empty not in r.labels[task])
    for r in results:
        assert r.labels["hate"] == ("hateful" if r.pred_hate["hateful"] > 0.5 else "not_hateful")
        d = r.to_dict()
        assert set(d) == {"text", "ocr", "pred_hate", "pred_pc", "pred_attack", "labels"}


def test_memes_without_a_caption_are_read_by_the_real_ocr(classifier, test_memes, demo_data):
    paths = [demo_data / m.img for m in test_memes[:2]]
    results = classifier.predict(images=paths, texts=[None, "a caption given"])
    expected = classifier.load_ocr().read([Image.open(paths[0]).convert("RGB")])[0]
    assert classifier.info()["ocr"] == "easyocr"
    assert results[0].ocr is True and results[0].text == expected
    assert results[1].ocr is False and results[1].text == "a caption given"
    # The OCR'd caption is then scored like any given caption.
    again = classifier.predict(images=paths[:1], texts=[expected])[0]
    assert again.pred_pc == pytest.approx(results[0].pred_pc, abs=1e-5)


def test_only_memes_without_a_caption_go_to_ocr(tiny_runs, demo_data, test_memes):
    # About routing only: a fake reader records what it is asked to read.
    reader = FakeReader()
    clf = MemeClassifier.load(tiny_runs / "A", ocr=reader, device="cpu")
    paths = [demo_data / m.img for m in test_memes[:4]]
    results = clf.predict(images=paths, texts=["given", None, "given too", None])
    assert reader.calls == [2]
    assert [r.text for r in results] == ["given", "read 0", "given too", "read 1"]
    assert [r.ocr for r in results] == [False, True, False, True]
    assert clf.predict(images=paths[:1], texts=["x"]) and reader.calls == [2]
    assert results[0].pred_attack is None and "attack" not in results[0].labels


class IdentifiedReader(FakeReader):
    """A fake reader with an identity, as the real engines have: its captions are cached."""
    identity = "fake: v1"

    def read(self, images):
        self.calls.append(len(images))
        return [f"read {image.getpixel((0, 0))}" for image in images]


def _spaces(cache_dir) -> set[str]:
    with sqlite3.connect(cache_dir / feature_store.FILENAME) as db:
        return {space.split("/")[0] for (space,) in db.execute("SELECT DISTINCT space FROM "
                                                               "vectors")}


def test_with_a_cache_dir_the_same_images_are_read_by_ocr_once(tiny_runs, demo_data, test_memes,
                                                               tmp_path):
    reader = IdentifiedReader()
    clf = MemeClassifier.load(tiny_runs / "A", ocr=reader, device="cpu")
    paths = [demo_data / m.img for m in test_memes[:3]]
    first = clf.predict(images=paths, cache_dir=tmp_path)
    assert reader.calls == [3]
    # The same files again, as paths, as their bytes (the key is the file's sha256), and one
    # new picture in memory: only that one is read.
    pixels = Image.open(demo_data / test_memes[3].img).convert("RGB")
    again = clf.predict(images=[*paths[:2], paths[2].read_bytes(), pixels], cache_dir=tmp_path)
    assert reader.calls == [3, 1]
    assert [r.text for r in again[:3]] == [r.text for r in first]
    assert all(r.ocr for r in again)
    # The captions and the features of the images and the captions are cached.
    assert _spaces(tmp_path) == {"ocr", "image", "text"}
    # Without a cache folder, as before: every caption is read.
    clf.predict(images=paths)
    assert reader.calls == [3, 1, 3]


def test_with_a_cache_dir_the_same_images_are_encoded_once(tiny_runs, demo_data, test_memes,
                                                           tmp_path, monkeypatch):
    clf = MemeClassifier.load(tiny_runs / "A", ocr="none", device="cpu")
    encoder = clf.runs[0].encoders.image
    encoded = []
    forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda pixels: encoded.append(len(pixels))
                        or forward(pixels))
    paths = [demo_data / m.img for m in test_memes[:3]]
    texts = [m.text for m in test_memes[:3]]
    pixels = Image.open(demo_data / test_memes[3].img).convert("RGB")
    first = clf.predict(images=[*paths, pixels], texts=[*texts, "x"], cache_dir=tmp_path)
    assert sum(encoded) == 4
    # The files again, as paths and as their bytes (keyed alike), and the same pixels.
    again = clf.predict(images=[paths[0], *(p.read_bytes() for p in paths[1:]), pixels.copy()],
                        texts=[*texts, "x"], cache_dir=tmp_path)
    assert sum(encoded) == 4 and [r.pred_pc for r in again] == [r.pred_pc for r in first]


def test_a_reader_without_identity_is_never_cached(tiny_runs, demo_data, test_memes, tmp_path):
    reader = FakeReader()  # nothing says when its captions would change
    clf = MemeClassifier.load(tiny_runs / "A", ocr=reader, device="cpu")
    paths = [demo_data / m.img for m in test_memes[:2]]
    for _ in range(2):
        clf.predict(images=paths, cache_dir=tmp_path)
    assert reader.calls == [2, 2] and "ocr" not in _spaces(tmp_path)


def test_a_named_engine_is_loaded_only_for_a_caption_the_cache_lacks(tiny_runs, demo_data,
                                                                     test_memes, tmp_path,
                                                                     monkeypatch):
    from hateful_memes.serving import ocr

    loaded = []

    def create_ocr(name, device):
        loaded.append((name, device))
        return IdentifiedReader()

    monkeypatch.setattr(ocr, "create_ocr", create_ocr)
    monkeypatch.setattr(ocr, "engine_identity", lambda name, device: IdentifiedReader.identity)
    paths = [demo_data / m.img for m in test_memes[:2]]
    first = MemeClassifier.load(tiny_runs / "A", ocr="rapidocr", device="cpu")
    texts = [r.text for r in first.predict(images=paths, cache_dir=tmp_path)]
    assert loaded == [("rapidocr", "cpu")]
    second = MemeClassifier.load(tiny_runs / "A", ocr="rapidocr", device="cpu")
    assert second.cached_captions([file_digest(p) for p in paths],
                                  tmp_path) == dict(zip([file_digest(p) for p in paths], texts))
    assert [r.text for r in second.predict(images=paths, cache_dir=tmp_path)] == texts
    assert loaded == [("rapidocr", "cpu")]  # all cached: never loaded
    assert second.ocr_identity() == IdentifiedReader.identity
    assert MemeClassifier.load(tiny_runs / "A", ocr="none").ocr_identity() is None


def test_a_text_only_run_needs_images_only_for_ocr(text_only_run, demo_data, test_memes):
    reader = FakeReader()  # routing, not OCR quality
    clf = MemeClassifier.load(text_only_run, ocr=reader, device="cpu")
    assert not clf.needs_images
    by_text = clf.predict(texts=[m.text for m in test_memes[:3]])
    with_images = clf.predict(images=[demo_data / m.img for m in test_memes[:3]],
                              texts=[m.text for m in test_memes[:3]])
    assert [r.pred_attack for r in by_text] == [r.pred_attack for r in with_images]
    with pytest.raises(ValueError, match="need their image"):
        clf.predict(texts=["a", None])
    assert clf.predict(images=[demo_data / test_memes[0].img])[0].text == "read 0"


def test_bad_calls_are_refused_with_a_reason(classifier, demo_data, test_memes, tiny_runs):
    path = demo_data / test_memes[0].img
    with pytest.raises(ValueError, match="2 images but 1 texts"):
        classifier.predict(images=[path, path], texts=["x"])
    with pytest.raises(ValueError, match="read pictures"):
        classifier.predict(texts=["x"])
    with pytest.raises(ImageReadError, match="image 1: not an image"):
        classifier.predict(images=[path, b"not an image"], texts=["x", "y"])
    with pytest.raises(ImageReadError, match="empty file"):
        classifier.predict(images=[b""], texts=["x"])
    with pytest.raises(TypeError, match="text 0"):
        classifier.predict(images=[path], texts=[3])
    with pytest.raises(ValueError, match="both predict 'pc'"):
        MemeClassifier.load(tiny_runs / "A", tiny_runs / "A", device="cpu")
    assert classifier.predict(images=[], texts=[]) == []


def test_a_lone_image_or_caption_is_refused_not_iterated(classifier, demo_data, test_memes):
    path = demo_data / test_memes[0].img
    # Iterated, a path was one meme per letter, and the file's bytes one per byte.
    for lone in (str(path), path, path.read_bytes(), Image.open(path)):
        with pytest.raises(TypeError, match="images: expected a list of images"):
            classifier.predict(images=lone, texts=["x"])
    with pytest.raises(TypeError, match="texts: expected a list of captions"):
        classifier.predict(images=[path], texts="x")


class FakeRun:
    """A text-only run whose scores are fixed: for what predict builds around them."""

    def __init__(self, task: str, real: bool):
        self.name, self.device = f"run_{task}", "cpu"
        self.cfg = types.SimpleNamespace(tasks=(task,), image_encoder="none")
        self.task, self.real = task, real

    def scores(self, memes, *args, **kwargs):
        n, k = len(memes), len(LABELS[self.task])
        task = np.zeros((n, k), np.float32)
        task[:, 1 if self.real else 0] = 0.9
        # The task before hate, as RunPredictor's dicts come.
        return {self.task: task, "hate": np.full((n, 2), 0.5, np.float32)}


def test_labels_and_scores_come_in_the_order_of_labels_tasks():
    for runs, tasks in (([FakeRun("attack", True), FakeRun("pc", False)], ["hate", "pc", "attack"]),
                        ([FakeRun("pc", True)], ["hate", "pc"])):
        clf = MemeClassifier(runs, ocr="none")
        assert list(clf.scores([Meme(id=1, img="", text="x")])) == tasks
        result = clf.predict(texts=["a caption"])[0]
        assert list(result.labels) == tasks
        assert list(result.to_dict()["labels"]) == tasks
        assert result.labels["hate"] == "hateful"


def test_without_ocr_a_meme_without_caption_is_named_with_the_way_out(tmp_path):
    # ocr="none" (predict.py --ocr none): "give every meme a caption" did not say which one.
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    for path in paths:
        Image.new("RGB", (32, 32), "white").save(path)
    clf = MemeClassifier([FakeRun("pc", True)], ocr="none")
    with pytest.raises(ValueError) as error:
        clf.predict(images=paths, texts=["a caption", None, "another"])
    message = str(error.value)
    assert f"image 1 ({paths[1]})" in message and "a.png" not in message
    assert "texts" in message and "ocr=" in message  # the ways out: a caption, or an engine
    with pytest.raises(ValueError, match=r"image 0 has no caption"):
        clf.predict(images=[paths[0].read_bytes()])


@pytest.mark.parametrize("engine, ocr_device", [("rapidocr", "cpu"), ("tesseract", "cpu"),
                                                ("easyocr", "cuda"), ("auto", "cuda")])
def test_a_cpu_only_ocr_engine_reads_beside_a_model_on_the_gpu(monkeypatch, engine, ocr_device):
    # serve.py --device cuda --ocr tesseract: the engines refuse a GPU device of their own, so
    # the model's device must not be handed to them.
    from hateful_memes.serving import ocr

    asked = []

    def create_ocr(name, device):
        asked.append((name, device))
        if name in ("rapidocr", "tesseract") and device not in ("auto", "cpu"):
            raise ValueError(f"{name} runs on the CPU only, not on {device!r}")
        return types.SimpleNamespace(name=name, device=device)

    monkeypatch.setattr(ocr, "create_ocr", create_ocr)
    clf = MemeClassifier([FakeRun("pc", True)], ocr=engine, device="cuda")
    assert clf.load_ocr().device == ocr_device
    assert asked == [(engine, ocr_device)]


def test_merge_orders_tasks_as_labels_tasks():
    hate = np.zeros((1, 2), np.float32)
    merged = api.merge([{"attack": np.zeros((1, 8)), "hate": hate},
                        {"pc": np.zeros((1, 6)), "hate": hate}])
    assert list(merged) == ["hate", "pc", "attack"]


def test_open_image_reads_formats_and_refuses_bombs(tmp_path):
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    first = api.open_image(gif.getvalue())
    assert first.mode == "RGB" and first.size == (40, 30)
    assert first.getpixel((5, 5))[0] > 200  # the first frame (red), not the second
    for fmt in ("JPEG", "WEBP", "PNG"):
        buf = io.BytesIO()
        Image.new("L", (20, 10), 128).save(buf, fmt)
        assert api.open_image(buf.getvalue()).size == (20, 10)
    with pytest.raises(api.ImageTooLargeError, match="over the limit of 100"):
        api.open_image(Image.new("RGB", (20, 10)), max_pixels=100)
    with pytest.raises(api.ImageTooLargeError):
        api.open_image(bomb_png())
    with pytest.raises(ImageReadError, match="not found"):
        api.open_image(tmp_path / "nowhere.png")


def test_open_image_turns_a_photo_upright_as_the_training_reader_does(tmp_path):
    from hateful_memes.features.cache import load_rgb

    # Stored sideways (30 wide, 40 high) with EXIF orientation 6, "rotate 90 degrees to view",
    # as phones save photos: upright it is 40 x 30, as browsers (and the page's preview) show it.
    upright = Image.new("RGB", (40, 30), (255, 0, 0))
    upright.paste((0, 0, 255), (0, 0, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes(), quality=95)
    expected = np.asarray(load_rgb(path))  # what training and predict.py --input score
    assert expected.shape == (30, 40, 3)
    for item in (path, path.read_bytes(), Image.open(path)):
        np.testing.assert_array_equal(np.asarray(api.open_image(item)), expected)


def test_open_image_reads_16_bit_grey_as_the_training_reader_does(tmp_path):
    from hateful_memes.features.cache import load_rgb

    grey = np.linspace(0, 65535, 20 * 40).astype(np.uint16).reshape(20, 40)
    path = tmp_path / "scan.png"
    Image.fromarray(grey).save(path)
    expected = np.asarray(load_rgb(path))
    assert 100 < expected.mean() < 155  # the gradient, not a blank white picture
    for item in (path, path.read_bytes(), Image.open(path)):
        np.testing.assert_array_equal(np.asarray(api.open_image(item)), expected)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header claims width x height pixels (a decompression bomb's header)."""
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)
