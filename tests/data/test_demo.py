import json

import numpy as np
import pytest
from PIL import Image

from hateful_memes.data import demo
from hateful_memes.data.annotations import is_labelled, read_annotations
from hateful_memes.labels import ATTACK, EMPTY, HATE, PC, check

N = 60


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    paths = demo.generate(out, n=N, seed=3, image_size=128)
    return out, paths


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tree_has_every_split_and_one_image_per_meme(generated):
    out, paths = generated
    assert paths["train"] == out / "annotations" / "train.json"
    assert paths["dev"] == out / "annotations" / "dev.json"
    assert paths["test"] == out / "annotations" / "test.jsonl"
    counts = {split: len(_rows(paths[split])) for split in demo.SPLITS}
    assert sum(counts.values()) == N
    assert min(counts.values()) >= 3
    assert counts["train"] > counts["dev"] + counts["test"]
    ids = [row["id"] for split in demo.SPLITS for row in _rows(paths[split])]
    assert len(set(ids)) == N
    assert sorted(p.name for p in paths["img"].iterdir()) == sorted(f"{i:05d}.png" for i in ids)


def test_files_read_back_in_the_real_format(generated):
    out, paths = generated
    for split in ("train", "dev"):
        memes = read_annotations(paths[split])
        assert is_labelled(memes)
        for row in _rows(paths[split]):
            assert row["set_name"] == split
            assert (out / row["img"]).is_file()
    test = read_annotations(paths["test"])
    assert not any(m.gold_pc or m.gold_attack or m.gold_hate for m in test)
    assert all(set(row) == {"id", "img", "text"} for row in _rows(paths["test"]))


def test_labels_are_consistent_across_the_three_tasks():
    for meme in demo.make_memes(600, seed=1):
        for task, labels in (("hate", meme.hate), ("pc", meme.pc), ("attack", meme.attack)):
            check(task, labels)
        hateful = meme.hate == (HATE[1],)
        assert hateful == (meme.pc != (EMPTY["pc"],)) == (meme.attack != (EMPTY["attack"],))
        assert len(meme.pc) <= 2 and len(meme.attack) <= 2
        row = meme.row()
        if meme.split != "test":
            assert row["pc"] == ([list(meme.pc)] * 3 if hateful else "None")


def test_some_hateful_memes_carry_two_labels():
    memes = demo.make_memes(600, seed=1)
    assert any(len(m.pc) == 2 for m in memes)
    assert any(len(m.attack) == 2 for m in memes)


@pytest.mark.parametrize("n", [demo.MIN_N, N])
def test_every_real_label_has_a_positive_in_train(n):
    for seed in range(5):
        train = [m for m in demo.make_memes(n, seed) if m.split == "train"]
        assert {label for m in train for label in m.pc} >= set(PC[1:])
        assert {label for m in train for label in m.attack} >= set(ATTACK[1:])
        assert any(m.hate == (HATE[0],) for m in train)


def _names_target(text: str) -> set[str]:
    return {pc for pc, nouns in demo._TARGET_NOUNS.items() if any(noun in text for noun in nouns)}


def test_labels_come_from_the_picture_for_some_memes_and_the_caption_for_others():
    memes = demo.make_memes(600, seed=2)
    hateful = [m for m in memes if m.hate == (HATE[1],)]
    for m in hateful:
        # Each category sits in exactly one modality, so none can be read from both.
        assert set(m.pc) - {EMPTY["pc"]} == set(m.image_targets) | _names_target(m.text)
        assert not set(m.image_targets) & _names_target(m.text)
    picture_only = [m for m in hateful if m.image_targets and not _names_target(m.text)]
    caption_only = [m for m in hateful if not m.image_targets and _names_target(m.text)]
    assert picture_only and caption_only
    # The same cues appear on benign memes, so no single cue decides hatefulness.
    benign = [m for m in memes if m.hate == (HATE[0],)]
    assert any(m.image_targets for m in benign) and any(m.image_attacks for m in benign)
    assert any(_names_target(m.text) for m in benign)


def test_images_are_the_rendered_memes_at_the_declared_size(generated):
    out, paths = generated
    memes = {m.id: m for m in demo.make_memes(N, seed=3)}
    for split in demo.SPLITS:
        for row in _rows(paths[split]):
            with Image.open(out / row["img"]) as image:
                assert image.size == (128, 128) and image.mode == "RGB"
                expected = demo.render(memes[row["id"]], 128)
                assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_caption_is_drawn_near_the_top_or_bottom_edge():
    for meme in demo.make_memes(30, seed=4):
        bare = np.asarray(demo.picture(meme, 256)).astype(int)
        captioned = np.asarray(demo.render(meme, 256)).astype(int)
        changed_rows = np.flatnonzero(np.abs(captioned - bare).sum(axis=(1, 2)))
        assert changed_rows.size, meme.text
        assert not np.any((changed_rows > 256 * 0.45) & (changed_rows < 256 * 0.55)), meme.text
        # White letters, whatever the background.
        assert np.any((captioned[changed_rows] == 255).all(axis=-1)), meme.text


def test_same_seed_same_bytes_and_pixels_other_seed_differs(tmp_path):
    a = demo.generate(tmp_path / "a", n=30, seed=7, image_size=64)
    b = demo.generate(tmp_path / "b", n=30, seed=7, image_size=64)
    c = demo.generate(tmp_path / "c", n=30, seed=8, image_size=64)
    for split in demo.SPLITS:
        assert a[split].read_bytes() == b[split].read_bytes()
        assert a[split].read_bytes() != c[split].read_bytes()
    for path in a["img"].iterdir():
        with Image.open(path) as x, Image.open(b["img"] / path.name) as y:
            assert np.array_equal(np.asarray(x), np.asarray(y))


def test_too_few_memes_is_refused():
    with pytest.raises(ValueError, match="n must be between"):
        demo.make_memes(demo.MIN_N - 1)


def test_cli_writes_the_tree(tmp_path, capsys):
    assert demo.main([str(tmp_path / "out"), "--n", "30", "--seed", "1", "--image-size", "64"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"] + summary["dev"] + summary["test"] == 30
    assert len(list((tmp_path / "out" / "img").glob("*.png"))) == 30
    assert read_annotations(tmp_path / "out" / "annotations" / "train.json")


def test_cli_reports_a_bad_n(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main([str(tmp_path / "out"), "--n", "5"])
    assert exit_info.value.code == 2
    assert "n must be between" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_no_demo_output_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    (real / "annotations").mkdir(parents=True)
    (real / "annotations" / "train.json").write_text('{"id": 1}\n')
    (real / "img").mkdir()
    (real / "img" / "00001.png").write_bytes(b"a real meme")
    with pytest.raises(SystemExit):
        demo.main([str(real), "--n", "30", "--image-size", "64"])
    assert "is no earlier demo output" in capsys.readouterr().err
    assert (real / "annotations" / "train.json").read_text() == '{"id": 1}\n'
    assert (real / "img" / "00001.png").read_bytes() == b"a real meme"
    assert sorted(p.name for p in real.rglob("*")) == ["00001.png", "annotations", "img",
                                                       "train.json"]


def test_an_earlier_demo_output_or_an_empty_folder_may_be_generated_into(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    demo.generate(out, n=30, seed=1, image_size=64)
    assert json.loads((out / demo.MARKER).read_text())["synthetic"] is True
    first = (out / "annotations" / "train.json").read_bytes()
    demo.generate(out, n=30, seed=2, image_size=64)
    assert (out / "annotations" / "train.json").read_bytes() != first


def test_every_caption_style_occurs_and_is_a_function_of_the_seed():
    memes = demo.make_memes(200, seed=5)
    styles = [demo.caption_style(m.seed) for m in memes]
    assert set(styles) == set(demo.CAPTION_STYLES)
    assert styles == [demo.caption_style(m.seed) for m in memes]


def test_stacked_captions_sit_at_one_edge_only():
    stacked = [m for m in demo.make_memes(200, seed=5) if demo.caption_style(m.seed) == "stacked"]
    assert stacked
    for meme in stacked:
        bare = np.asarray(demo.picture(meme, 256)).astype(int)
        changed = np.flatnonzero(np.abs(np.asarray(demo.render(meme, 256)) - bare).sum(axis=(1, 2)))
        assert changed.max() < 128 or changed.min() > 128, meme.text
