import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import rewrite_after_hashing, spawn_and_join
from hateful_memes.cli import predict
from hateful_memes.data import images
from hateful_memes.data.annotations import read_annotations
from hateful_memes.data.submission import read_submission
from hateful_memes.serving import api


@pytest.fixture(scope="module")
def folder(demo_data, tmp_path_factory):
    """Test-split images as a folder: numeric stems, a renamed copy in a subfolder, a bad file."""
    root = tmp_path_factory.mktemp("images")
    memes = read_annotations(demo_data / "annotations" / "test.jsonl")
    for m in memes:
        shutil.copyfile(demo_data / m.img, root / m.img.split("/")[-1])
    (root / "sub").mkdir()
    shutil.copyfile(demo_data / memes[0].img, root / "sub" / "funny cat.png")
    (root / "sub" / "broken.jpg").write_bytes(b"this is no jpeg")
    (root / "notes.txt").write_text("not an image, not listed")
    with open(root.parent / f"{root.name}_captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "text"])
        for m in memes:
            w.writerow([m.img.split("/")[-1], m.text])
        w.writerow(["sub/funny cat.png", memes[0].text])
    return root


def _args(runs, folder, out, *extra):
    return ["--run", str(runs / "A"), "--model", str(runs / "B"), "--images", str(folder),
            "--captions", str(folder.parent / f"{folder.name}_captions.csv"), "--out", str(out),
            "--cache-dir", str(Path(out).parent / "cache"), "--quiet", *extra]


def _sidecar(out):
    with open(images.sidecar_path(out), newline="") as f:
        return {int(r["id"]): r for r in csv.DictReader(f)}


def test_a_folder_gets_ids_a_sidecar_and_the_annotation_paths_scores(
        tiny_runs, folder, demo_data, feature_cache, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert predict.main(_args(tiny_runs, folder, out)) == 0
    err = capsys.readouterr().err
    assert "1 of" in err and "broken.jpg" in err  # counted and named, not a crash
    ids, scores = read_submission(out)
    memes = read_annotations(demo_data / "annotations" / "test.jsonl")
    cat = images.hashed_id("sub/funny cat.png")
    assert 0 < cat < 2 ** 53
    assert sorted(ids) == sorted([m.id for m in memes] + [cat])
    side = _sidecar(out)
    assert set(side) == set(ids)
    assert side[cat]["image"] == str(folder / "sub" / "funny cat.png")
    assert all(r["ocr"] == "0" for r in side.values())  # every caption was in the CSV
    # The same memes through predict.py --input: the same scores (one scoring path).
    ref = tmp_path / "ref.jsonl"
    assert predict.main(["--run", str(tiny_runs / "A"), "--run", str(tiny_runs / "B"),
                         "--input", str(demo_data / "annotations" / "test.jsonl"),
                         "--out", str(ref), "--cache-dir", str(feature_cache), "--quiet"]) == 0
    ref_ids, ref_scores = read_submission(ref)
    row = {id_: i for i, id_ in enumerate(ids)}
    for task in ("hate", "pc", "attack"):
        got = scores[task][[row[i] for i in ref_ids]]
        np.testing.assert_allclose(got, ref_scores[task], atol=1e-5)
        np.testing.assert_allclose(scores[task][row[cat]], got[0], atol=1e-5)


def test_a_rerun_skips_what_out_holds_and_picks_up_new_images(tiny_runs, folder, tmp_path,
                                                              capsys):
    part = tmp_path / "part"
    shutil.copytree(folder, part)
    shutil.copyfile(folder.parent / f"{folder.name}_captions.csv",
                    tmp_path / "part_captions.csv")
    later = sorted(part.glob("*.png"))[-3:]
    for p in later:
        p.rename(tmp_path / p.name)
    out = tmp_path / "out.jsonl"
    assert predict.main(_args(tiny_runs, part, out)) == 0
    first = out.read_text().splitlines()
    for p in later:
        (tmp_path / p.name).rename(p)
    capsys.readouterr()
    assert predict.main(_args(tiny_runs, part, out)) == 0
    said = capsys.readouterr().out
    assert "(3 new, " in said and f"{len(first)} already there" in said
    again = out.read_text().splitlines()
    assert again[:len(first)] == first  # the earlier rows untouched
    assert len(again) == len(first) + 3 and len(_sidecar(out)) == len(again)
    assert not list(tmp_path.glob("*.partial"))


def test_a_killed_run_leaves_no_out_and_the_next_run_finishes_it(tiny_runs, folder, tmp_path,
                                                                 monkeypatch):
    out = tmp_path / "out.jsonl"
    real = api.MemeClassifier.predict
    calls = []

    def dies_on_the_second_chunk(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(api.MemeClassifier, "predict", dies_on_the_second_chunk)
    # the kill, as Ctrl-C ends a command
    assert predict.main(_args(tiny_runs, folder, out, "--chunk", "4")) == 130
    partial = tmp_path / "out.jsonl.partial"
    assert not out.exists() and len(partial.read_text().splitlines()) == 4
    with open(partial, "a") as f:
        f.write('{"id": 1, "pred_ha')  # a kill in the middle of a line
    monkeypatch.setattr(api.MemeClassifier, "predict", real)
    assert predict.main(_args(tiny_runs, folder, out, "--chunk", "4")) == 0
    ids, _ = read_submission(out)
    assert len(ids) == len(set(ids)) == len(list(folder.glob("*.png"))) + 1
    assert not partial.exists()


def test_out_of_other_runs_is_not_mixed_in(tiny_runs, folder, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert predict.main(["--run", str(tiny_runs / "A"), "--images", str(folder / "sub"),
                         "--out", str(out), "--quiet", "--captions",
                         str(folder.parent / f"{folder.name}_captions.csv"),
                         "--cache-dir", str(tmp_path / "cache")]) == 0
    said = capsys.readouterr()
    # sub/ holds one readable image and one broken file: counted in the singular and plural.
    assert f"wrote {out}: 1 meme (1 new, 0 already there)" in said.out
    assert "1 of 2 images unreadable" in said.err
    assert predict.main(_args(tiny_runs, folder, out)) == 1
    assert "choose another --out" in capsys.readouterr().err


def test_images_without_captions_are_read_by_ocr(tiny_runs, folder, tmp_path):
    out = tmp_path / "out.jsonl"
    assert predict.main(["--run", str(tiny_runs / "B"), "--images",
                         str(folder / "sub" / "funny cat.png"), "--out", str(out),
                         "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    (row,) = _sidecar(out).values()
    assert row["ocr"] == "1" and row["image"].endswith("funny cat.png")
    assert json.loads(out.read_text())["id"] == images.hashed_id("funny cat.png")


def test_ocr_none_names_an_image_without_caption_and_points_to_captions(tiny_runs, folder,
                                                                        tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    captions = str(folder.parent / f"{folder.name}_captions.csv")
    # The CSV names "sub/funny cat.png"; listed from sub/ the file is "funny cat.png".
    for extra in (["--captions", captions], []):
        assert predict.main(["--run", str(tiny_runs / "B"), "--images", str(folder / "sub"),
                             "--out", str(out), "--ocr", "none", "--quiet",
                             "--cache-dir", str(tmp_path / "cache"), *extra]) == 1
        err = capsys.readouterr().err
        assert str(folder / "sub" / "funny cat.png") in err and "--captions FILE.csv" in err
        assert "broken.jpg" not in err  # unreadable: counted as such, needs no caption
        assert not out.exists()
    # Every readable image captioned: an unreadable one without a caption is no obstacle.
    assert predict.main(_args(tiny_runs, folder, out, "--ocr", "none")) == 0
    assert "broken.jpg" in capsys.readouterr().err


def test_an_ocr_engine_that_fails_to_load_fails_before_any_progress_line(
        tiny_runs, folder, tmp_path, capsys, monkeypatch):
    # "predict: done 0/1 memes" came before the engine's error, as if the work were done.
    from hateful_memes.serving import ocr

    def not_installed(name, device):
        raise ocr.OCRNotInstalled(f"{name} is not installed")

    monkeypatch.setattr(ocr, "create_ocr", not_installed)
    out = tmp_path / "out.jsonl"
    assert predict.main(["--run", str(tiny_runs / "B"), "--images",
                         str(folder / "sub" / "funny cat.png"), "--out", str(out),
                         "--cache-dir", str(tmp_path / "cache"), "--ocr", "rapidocr"]) == 1
    err = capsys.readouterr().err
    assert err == "predict.py: error: rapidocr is not installed\n"


class CountingEngine:
    """Stands in for the OCR engine predict.py loads: counts its loads and the pictures it
    reads; its identity is what `engine_identity` says at its load."""
    name = "counting"
    device = "cpu"
    loads = 0
    read_pictures = 0

    def __init__(self, identity):
        CountingEngine.loads += 1
        self.identity = identity

    def read(self, images):
        CountingEngine.read_pictures += len(images)
        return [f"{self.identity} read {image.size}" for image in images]


@pytest.fixture
def counting_engine(monkeypatch):
    from hateful_memes.serving import ocr

    identity = {"now": "counting: v1"}
    monkeypatch.setattr(ocr, "engine_identity", lambda name, device: identity["now"])
    monkeypatch.setattr(ocr, "create_ocr",
                        lambda name, device: CountingEngine(identity["now"]))
    monkeypatch.setattr(CountingEngine, "loads", 0)
    monkeypatch.setattr(CountingEngine, "read_pictures", 0)
    return identity


def test_a_second_prediction_of_the_same_images_reads_none_by_ocr(tiny_runs, folder, tmp_path,
                                                                  counting_engine):
    # sub/funny cat.png is a copy of another image: the same bytes are read once.
    readable = len({path.read_bytes() for path in folder.rglob("*.png")})
    assert readable == len(list(folder.rglob("*.png"))) - 1
    cache = tmp_path / "cache"

    def run(out):
        # No --captions: every image is read by OCR, the broken one counted as unreadable.
        assert predict.main(["--run", str(tiny_runs / "A"), "--images", str(folder),
                             "--out", str(tmp_path / out), "--cache-dir", str(cache),
                             "--ocr", "rapidocr", "--quiet"]) == 0
        return _sidecar(tmp_path / out)

    first = run("first.jsonl")
    assert (CountingEngine.loads, CountingEngine.read_pictures) == (1, readable)
    assert all(r["ocr"] == "1" and r["text"].startswith("counting: v1") for r in first.values())
    again = run("again.jsonl")  # a new run over the same images: the engine is not even loaded
    assert (CountingEngine.loads, CountingEngine.read_pictures) == (1, readable)
    assert again == first
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "first.jsonl").read_text()
    # Another engine version (or weights, or device): nothing of the old one is served.
    counting_engine["now"] = "counting: v2"
    third = run("third.jsonl")
    assert (CountingEngine.loads, CountingEngine.read_pictures) == (2, 2 * readable)
    assert all(r["text"].startswith("counting: v2") for r in third.values())


def test_a_second_prediction_of_the_same_files_computes_no_image_feature(
        tiny_runs, folder, demo_data, tmp_path, monkeypatch):
    from hateful_memes.models import encoders

    encoded = []
    forward = encoders.TimmImageEncoder.forward

    def counted(self, pixels):
        encoded.append(len(pixels))
        return forward(self, pixels)

    monkeypatch.setattr(encoders.TimmImageEncoder, "forward", counted)
    copy = tmp_path / "images"
    shutil.copytree(folder, copy)
    cache = tmp_path / "cache"
    both = ["--run", str(tiny_runs / "A"), "--run", str(tiny_runs / "B"), "--cache-dir",
            str(cache), "--quiet"]

    def run(out, *source):
        encoded.clear()
        assert predict.main([*both, *source, "--out", str(tmp_path / out)]) == 0
        return sum(encoded)

    images = ["--images", str(copy),
              "--captions", str(folder.parent / f"{folder.name}_captions.csv")]
    # sub/funny cat.png is a copy of another image, sub/broken.jpg cannot be read.
    distinct = len({path.read_bytes() for path in copy.rglob("*.png")})
    assert run("first.jsonl", *images) == distinct  # both runs share one image encoder
    assert run("again.jsonl", *images) == 0
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "first.jsonl").read_text()
    # The test split's files by --input: the same entries, keyed by the files' bytes.
    assert run("input.jsonl", "--input", str(demo_data / "annotations" / "test.jsonl")) == 0
    changed = sorted(copy.glob("*.png"))[0]
    Image.new("RGB", (64, 48), (200, 30, 90)).save(changed)
    assert run("changed.jsonl", *images) == 1


def test_an_empty_cache_dir_writes_no_cache(tiny_runs, folder, demo_data, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    both = ["--run", str(tiny_runs / "A"), "--run", str(tiny_runs / "B"), "--quiet"]
    assert predict.main([*both, "--input", str(demo_data / "annotations" / "test.jsonl"),
                         "--out", str(tmp_path / "input.jsonl"), "--cache-dir", ""]) == 0
    assert predict.main(_args(tiny_runs, folder, tmp_path / "images.jsonl", "--cache-dir", ""))\
        == 0
    assert list(work.iterdir()) == []
    assert '"": no cache, nothing written' in " ".join(predict._parser().format_help().split())


def test_ocr_is_not_loaded_when_no_readable_image_lacks_a_caption(tiny_runs, folder, tmp_path,
                                                                  monkeypatch):
    # The CSV captions every image but sub/broken.jpg, which cannot be decoded: nothing for OCR
    # to read, so an engine that cannot load is no obstacle.
    from hateful_memes.serving import ocr

    def not_installed(name, device):
        raise ocr.OCRNotInstalled(f"{name} is not installed")

    monkeypatch.setattr(ocr, "create_ocr", not_installed)
    out = tmp_path / "out.jsonl"
    assert predict.main(_args(tiny_runs, folder, out, "--ocr", "rapidocr")) == 0
    assert all(r["ocr"] == "0" for r in _sidecar(out).values())


class FileUse:
    """What a run does with the files under `folder`: each one's opens (an audit hook sees
    every open, whatever reads the file: open, Path.read_bytes, PIL) and decodes (PIL's
    ImageFile.load with pixels still to decode, told apart by the picture's size)."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.opened: dict[str, int] = {}
        self.decoded: dict[tuple[int, int], int] = {}

    def clear(self):
        self.opened.clear()
        self.decoded.clear()

    def saw_open(self, path):
        if isinstance(path, int):
            return  # a file descriptor: no file of ours is opened that way
        path = Path(os.fsdecode(path)).resolve()
        if path.parent == self.folder:
            self.opened[path.name] = self.opened.get(path.name, 0) + 1


_file_use: list[FileUse] = []  # the test's, while one runs (an audit hook cannot be removed)


def _audit(event, args):
    if event == "open" and _file_use:
        _file_use[0].saw_open(args[0])


sys.addaudithook(_audit)


@pytest.fixture
def file_use(monkeypatch):
    from PIL import ImageFile

    def watch(folder: Path) -> FileUse:
        use = FileUse(folder)
        _file_use.append(use)
        load = ImageFile.ImageFile.load

        def counted(image):
            if image.tile:  # pixels not yet decoded
                use.decoded[image.size] = use.decoded.get(image.size, 0) + 1
            return load(image)

        monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
        return use

    yield watch
    _file_use.clear()


def _pictures(folder: Path, n: int) -> dict[str, tuple[int, int]]:
    """`n` PNGs of sizes of their own (decodes are told apart by size): {name: size}."""
    folder.mkdir()
    sizes = {}
    for i in range(n):
        size = (48 + 4 * i, 40)
        Image.new("RGB", size, (40 * i, 120, 200 - 30 * i)).save(folder / f"pic{i}.png")
        sizes[f"pic{i}.png"] = size
    return sizes


def test_each_image_is_read_once_and_decoded_once(tiny_runs, tmp_path, counting_engine,
                                                  file_use):
    # No captions: each file's caption is looked up in the OCR cache by its bytes' key, read
    # by OCR where missing, and its features looked up and computed from the same bytes.
    folder = tmp_path / "pics"
    sizes = _pictures(folder, 3)
    (folder / "broken.png").write_bytes(b"no png")
    use = file_use(folder)
    for run in ("first", "again"):  # computed and read by OCR, then all from the cache
        use.clear()
        assert predict.main(["--run", str(tiny_runs / "A"), "--run", str(tiny_runs / "B"),
                             "--images", str(folder), "--out", str(tmp_path / f"{run}.jsonl"),
                             "--cache-dir", str(tmp_path / "cache"), "--ocr", "rapidocr",
                             "--chunk", "2", "--quiet"]) == 0
        assert use.opened == {**{name: 1 for name in sizes}, "broken.png": 1}, run
        assert use.decoded == {size: 1 for size in sizes.values()}, run
    assert (CountingEngine.loads, CountingEngine.read_pictures) == (1, len(sizes))


def test_a_later_chunk_with_an_image_to_read_loads_the_engine_then(tiny_runs, tmp_path,
                                                                   counting_engine):
    # The first chunk is captioned: the engine is not looked ahead for (that would read every
    # file twice), the second chunk's uncaptioned image loads it.
    folder = tmp_path / "pics"
    _pictures(folder, 3)
    captions = tmp_path / "captions.csv"
    captions.write_text("image,text\npic0.png,a caption\npic1.png,another\n")
    out = tmp_path / "out.jsonl"
    assert predict.main(["--run", str(tiny_runs / "B"), "--images", str(folder), "--out",
                         str(out), "--captions", str(captions), "--cache-dir",
                         str(tmp_path / "cache"), "--ocr", "rapidocr", "--chunk", "2",
                         "--quiet"]) == 0
    ocr = {Path(r["image"]).name: r["ocr"] for r in _sidecar(out).values()}
    assert ocr == {"pic0.png": "0", "pic1.png": "0", "pic2.png": "1"}
    assert (CountingEngine.loads, CountingEngine.read_pictures) == (1, 1)


def test_with_ocr_none_each_image_is_read_once(tiny_runs, tmp_path, file_use):
    # --ocr none tries the images without a caption up front: an unreadable one is not
    # tried again for its chunk.
    folder = tmp_path / "pics"
    sizes = _pictures(folder, 2)
    (folder / "broken.png").write_bytes(b"no png")
    captions = tmp_path / "captions.csv"
    captions.write_text("image,text\n" + "".join(f"{name},a caption\n" for name in sizes))
    use = file_use(folder)
    assert predict.main(["--run", str(tiny_runs / "A"), "--images", str(folder), "--out",
                         str(tmp_path / "out.jsonl"), "--captions", str(captions),
                         "--cache-dir", str(tmp_path / "cache"), "--ocr", "none",
                         "--quiet"]) == 0
    assert use.opened == {**{name: 1 for name in sizes}, "broken.png": 1}
    assert use.decoded == {size: 1 for size in sizes.values()}


def test_input_with_an_image_rewritten_while_its_features_are_computed_is_a_one_line_error(
        tiny_runs, demo_data, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    test_file = data / "annotations" / "test.jsonl"
    image = data / json.loads(test_file.read_text().splitlines()[0])["img"]
    rewrite_after_hashing(monkeypatch, image)
    assert predict.main(["--run", str(tiny_runs / "A"), "--input", str(test_file), "--out",
                         str(tmp_path / "out.jsonl"), "--cache-dir", str(tmp_path / "cache"),
                         "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{image}: changed while its features were computed" in err and "Traceback" not in err


def test_a_misspelt_ocr_engine_is_a_usage_error_before_any_run_loads(tmp_path, capsys):
    for source in (["--input", str(tmp_path / "test.jsonl")],
                   ["--images", str(tmp_path), "--out", str(tmp_path / "o.jsonl")]):
        with pytest.raises(SystemExit) as exit_:
            predict.main(["--run", str(tmp_path / "nowhere"), *source, "--ocr", "tesserect"])
        assert exit_.value.code == 2
        assert "invalid choice: 'tesserect'" in capsys.readouterr().err


def test_the_readme_names_every_ocr_engine_choice():
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    paragraph = " ".join(readme[readme.index("`--ocr` (predict.py"):].split("\n\n")[0].split())
    for choice in predict.OCR_CHOICES:
        assert f"`{choice}`" in paragraph, choice


def test_bad_command_lines_and_caption_files(tiny_runs, folder, tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict.main(["--run", str(tiny_runs / "A"), "--images", str(folder)])
    assert "--images needs --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main(["--run", str(tiny_runs / "A"), "--images", str(folder), "--out",
                      str(tmp_path / "o.jsonl"), "--prior", "em"])
    bad = tmp_path / "bad.csv"
    bad.write_text("path,caption\nx.png,hello\n")
    assert predict.main(["--run", str(tiny_runs / "A"), "--images", str(folder), "--out",
                         str(tmp_path / "o.jsonl"), "--captions", str(bad), "--quiet",
                         "--cache-dir", str(tmp_path / "cache")]) == 1
    assert "expected the columns image,text" in capsys.readouterr().err
    bad.write_text("image,text\nx.png,a\nx.png,b\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: x.png has a caption already \(line 2\)"):
        images.read_captions(bad)


def test_two_torchrun_processes_write_what_one_process_writes(tiny_runs, demo_data, tmp_path):
    """`torchrun --nproc_per_node=2 predict.py --model ...`: the ranks split the encoders' work
    (each its share of the images and captions, on gloo here), rank 0 writes the file; it holds
    the ids, order and scores of a one-process run (float tolerance: batches differ)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    dev = demo_data / "annotations" / "dev.json"
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    models = ["--model", str(tiny_runs / "A"), "--model", str(tiny_runs / "B")]
    assert predict.main([*models, "--input", str(dev), "--out", str(one), "--device", "cpu",
                         "--cache-dir", str(tmp_path / "cache1"), "--quiet"]) == 0
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "predict.py", *models, "--input", str(dev), "--out", str(two), "--device", "cpu",
         "--cache-dir", str(tmp_path / "cache2"), "--quiet"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone writes and reports
    ids_one, scores_one = read_submission(one)
    ids_two, scores_two = read_submission(two)
    assert ids_two == ids_one
    for task in scores_one:
        np.testing.assert_allclose(scores_two[task], scores_one[task], atol=1e-5)
    assert not list(tmp_path.glob(".two.jsonl*"))  # no temp left beside the output


def _failing_rank_worker(rank: int, world: int, port: int, argv: list[str], logs: str,
                         alone: tuple | None, own: dict | None, machines: bool) -> None:
    """predict.main as torchrun runs it on rank `rank`, with the options `own` gives that rank
    (as on another machine); with `alone` (RANK, "unreadable" or "interrupted"), that rank alone
    cannot read the input or is sent a SIGINT while it reads it; with `machines` each rank is
    on a machine of its own. What the rank says goes to LOGS/rank<RANK>.err, its exit status
    to LOGS/rank<RANK>.status."""
    import contextlib
    import io
    import os
    import signal
    import sys

    import torch

    from hateful_memes.data.annotations import AnnotationError

    sys.argv = ["predict.py"]  # as torchrun starts it: the lines a command says begin with it
    os.environ.update(RANK=str(rank), LOCAL_RANK="0" if machines else str(rank),
                      GROUP_RANK=str(rank) if machines else "0", WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as at a terminal
    torch.set_num_threads(1)
    if alone is not None and rank == alone[0]:
        read = predict.read_annotations

        def reading(path):
            if alone[1] == "interrupted":
                os.kill(os.getpid(), signal.SIGINT)  # `kill -INT` of this rank alone
                return read(path)
            raise AnnotationError(f"{path}:1: not JSON")
        predict.read_annotations = reading
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = predict.main([*argv, *(own or {}).get(rank, [])])
    Path(logs, f"rank{rank}.err").write_text(err.getvalue())
    Path(logs, f"rank{rank}.status").write_text(str(code))


def _said_under_two_ranks(argv: list[str], logs: Path, alone: tuple | None = None,
                          own: dict | None = None, machines: bool = False,
                          status: tuple = (1, 1)) -> list:
    """The lines each of 2 ranks says (`_failing_rank_worker`), once each exited with
    `status`, within the time a rank left waiting for another fails the test."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn_and_join(_failing_rank_worker, (2, port, argv, str(logs), alone, own, machines), 300)
    assert tuple(int((logs / f"rank{rank}.status").read_text()) for rank in range(2)) == status
    return [[line for line in (logs / f"rank{rank}.err").read_text().splitlines()
             if line.startswith("predict.py:")] for rank in range(2)]


def test_missing_weights_under_torchrun_are_said_once(demo_data, tmp_path):
    run = tmp_path / "no-run"
    said = _said_under_two_ranks(
        ["--model", str(run), "--input", str(demo_data / "annotations" / "dev.json"),
         "--out", str(tmp_path / "sub.jsonl"), "--device", "cpu", "--quiet"], tmp_path)
    assert len(said[0]) == 1 and said[1] == [], said
    assert said[0][0].startswith(f"predict.py: error: {run}: no checkpoint")


def test_an_input_one_rank_alone_cannot_read_is_said_by_that_rank(tiny_runs, demo_data,
                                                                  tmp_path):
    dev = demo_data / "annotations" / "dev.json"
    said = _said_under_two_ranks(
        ["--model", str(tiny_runs / "A"), "--input", str(dev), "--out", str(tmp_path / "sub.jsonl"),
         "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet"], tmp_path,
        alone=(1, "unreadable"))
    # Rank 0 stops too (status 1), without a line: rank 1 says what it hit, naming itself.
    assert said == [[], [f"predict.py: error: rank 1 of 2: {dev}:1: not JSON"]]
    assert not (tmp_path / "sub.jsonl").exists()


def test_on_two_machines_each_says_why_the_rank_that_failed_on_the_other_stopped_it(
        tiny_runs, demo_data, tmp_path):
    """Each rank on a machine of its own, rank 1's failing: rank 0's machine said nothing (its
    user saw the job stop without a reason); its first process says which rank failed."""
    dev = demo_data / "annotations" / "dev.json"
    said = _said_under_two_ranks(
        ["--model", str(tiny_runs / "A"), "--input", str(dev), "--out", str(tmp_path / "sub.jsonl"),
         "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet"], tmp_path,
        alone=(1, "unreadable"), machines=True)
    assert said == [[f"predict.py: error: checking the input and loading the runs failed on "
                     f"rank 1 of 2: AnnotationError: {dev}:1: not JSON"],
                    [f"predict.py: error: rank 1 of 2: {dev}:1: not JSON"]]


def test_a_rank_interrupted_alone_says_so_and_the_other_ranks_stop(tiny_runs, demo_data,
                                                                   tmp_path):
    """`kill -INT` of rank 1 alone (Ctrl-C reaches every rank: torchrun passes it on). Rank 1
    left without a word, rank 0 waited for it in a collective (until the timeout, 30 minutes
    on gloo); now rank 1 says it was interrupted (status 130) and rank 0 stops (status 1)."""
    dev = demo_data / "annotations" / "dev.json"
    said = _said_under_two_ranks(
        ["--model", str(tiny_runs / "A"), "--input", str(dev), "--out", str(tmp_path / "sub.jsonl"),
         "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet"], tmp_path,
        alone=(1, "interrupted"), status=(1, 130))
    assert said == [[], ["predict.py: rank 1 of 2: interrupted"]]
    assert not (tmp_path / "sub.jsonl").exists()


def test_images_that_differ_between_ranks_are_named_once(tiny_runs, demo_data, tmp_path):
    """Ranks given as many images, one of them another picture (an image folder that differs
    between machines): one error, said once, naming it. Only the counts were compared, and the
    features mixed the two folders' pictures."""
    dev = demo_data / "annotations" / "dev.json"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(demo_data / "img", elsewhere / "img")
    second = read_annotations(dev)[1].img
    Image.new("RGB", (8, 8), "red").save(elsewhere / second)
    said = _said_under_two_ranks(
        ["--model", str(tiny_runs / "A"), "--input", str(dev), "--out", str(tmp_path / "sub.jsonl"),
         "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet"], tmp_path,
        own={0: ["--image-root", str(demo_data)], 1: ["--image-root", str(elsewhere)]})
    assert len(said[0]) == 1 and said[1] == [], said
    size = (demo_data / second).stat().st_size, (elsewhere / second).stat().st_size
    assert said[0][0].startswith(
        "predict.py: error: effnet-lite0 features: rank 1 of 2 was given other image files than "
        f"rank 0, the first at image 2: rank 0 has {demo_data / second} ({size[0]} bytes), rank 1 "
        f"has {elsewhere / second} ({size[1]} bytes)"), said
    assert not (tmp_path / "sub.jsonl").exists()


@pytest.mark.parametrize("flag", ["--input", "--captions"])
def test_out_that_is_an_input_file_is_refused_before_it_is_replaced(demo_data, folder, tmp_path,
                                                                    capsys, flag):
    # Checked before any run is loaded: the run folder need not even exist.
    source = (demo_data / "annotations" / "test.jsonl" if flag == "--input"
              else folder.parent / f"{folder.name}_captions.csv")
    given = tmp_path / source.name
    shutil.copyfile(source, given)
    before = given.read_bytes()
    link = tmp_path / "link"
    link.symlink_to(given)  # the same file by another name
    common = ["--run", str(tmp_path / "run"), "--image-root", str(demo_data), "--quiet"]
    what = (["--input", str(given)] if flag == "--input"
            else ["--images", str(folder), "--captions", str(given)])
    assert predict.main([*common, *what, "--out", str(link)]) == 1
    assert f"is the input file {given}" in capsys.readouterr().err
    assert given.read_bytes() == before


def test_help_says_what_every_option_does_and_its_default():
    """A newcomer reads --help: --quiet said nothing, and --chunk hid its 64."""
    parser = predict._parser()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{action.option_strings[0]} has no help"
        if action.default not in (None, False):
            shown = parser._get_formatter()._expand_help(action)
            assert str(action.default) in shown, f"{action.option_strings[0]}: {shown}"
