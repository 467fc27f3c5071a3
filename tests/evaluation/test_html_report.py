import dataclasses
import hashlib
import re
import shutil
import struct
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest
from markupsafe import escape

from hateful_memes.cli.evaluate import main
from hateful_memes.data.annotations import gold_matrix, read_annotations
from hateful_memes.data.submission import read_submission, write_submission
from hateful_memes.evaluation.html_report import Predictions, ReportError, image_file, render
from hateful_memes.evaluation.metrics import evaluate
from hateful_memes.labels import LABELS

TASKS = ("hate", "pc", "attack")


class Cards(HTMLParser):
    """Every card of a page: its data- attributes and whether it holds a thumbnail."""

    def __init__(self):
        super().__init__()
        self.cards: list[dict] = []
        self.depth = 0  # div depth inside the current card, 0 outside any card

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag != "div":
            return
        if self.depth:
            self.depth += 1
            if "thumb" in attrs.get("class", "").split():
                self.cards[-1]["thumb"] = attrs["class"].split()[1]
        elif "data-kind" in attrs:
            self.depth = 1
            self.cards.append({k[5:]: v for k, v in attrs.items() if k.startswith("data-")}
                              | {"thumb": None})

    def handle_endtag(self, tag):
        if tag == "div" and self.depth:
            self.depth -= 1


def cards_of(page: str) -> list[dict]:
    parser = Cards()
    parser.feed(page)
    return parser.cards


def noisy_scores(memes, seed):
    """Scores that lean towards the gold but make mistakes, per task."""
    rng = np.random.default_rng(seed)
    return {task: np.clip(0.3 + 0.4 * gold_matrix(memes, task)
                          + rng.normal(0, 0.25, (len(memes), len(LABELS[task]))), 0, 1)
            for task in TASKS}


@pytest.fixture(scope="module")
def dev(demo_data, tmp_path_factory):
    """The demo dev split, a prediction file for it and a second, different one."""
    gold = demo_data / "annotations" / "dev.json"
    memes = read_annotations(gold)
    folder = tmp_path_factory.mktemp("preds")
    paths = []
    for seed in (0, 1):
        path = folder / f"pred{seed}.jsonl"
        # Reversed rows: the report must align by id, not by position.
        write_submission(path, [m.id for m in memes][::-1],
                         {t: s[::-1] for t, s in noisy_scores(memes, seed).items()})
        paths.append(path)
    return {"gold": gold, "memes": memes, "pred": paths[0], "pred2": paths[1],
            "images": demo_data}


def run_report(dev, out, *extra):
    code = main(["--gold", str(dev["gold"]), "--pred", str(dev["pred"]), "--out", str(out),
                 *extra])
    assert code == 0
    return (out / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(dev, tmp_path_factory):
    """The full page: thumbnails and a comparison (rendering is the slow part, so shared)."""
    return run_report(dev, tmp_path_factory.mktemp("report"), "--images", str(dev["images"]),
                      "--compare", str(dev["pred2"]))


def expected_errors(dev, task, label, k=12):
    """The label's top false positives and negatives, computed here from the files alone."""
    ids, scores = read_submission(dev["pred"])
    score_of = {id_: float(row[LABELS[task].index(label)])
                for id_, row in zip(ids, scores[task])}
    has = {m.id: label in m.gold(task) for m in dev["memes"]}
    fp = sorted((i for i in has if not has[i] and score_of[i] > 0.5), key=lambda i: -score_of[i])
    fn = sorted((i for i in has if has[i] and score_of[i] <= 0.5), key=lambda i: score_of[i])
    return fp[:k], fn[:k]


def test_every_top_error_of_every_label_has_a_card_with_its_thumbnail(dev, page):
    cards = [card for card in cards_of(page) if card["kind"] != "disagree"]
    n_errors = 0
    for task in TASKS:
        for label in ("hateful",) if task == "hate" else LABELS[task]:
            fp, fn = expected_errors(dev, task, label)
            for kind, expected in (("fp", fp), ("fn", fn)):
                shown = [c for c in cards if (c["task"], c["label"], c["kind"]) ==
                         (task, label, kind)]
                assert [int(c["meme"]) for c in shown] == expected, (task, label, kind)
                # Every demo meme has its image: each card shows it, embedded once in the style.
                for card in shown:
                    assert card["thumb"] == f"m{card['meme']}"
                    assert re.search(rf"\.m{card['meme']} {{ background-image: "
                                     rf"url\(data:image/jpeg;base64,[A-Za-z0-9+/=]+\); }}", page)
                n_errors += len(expected)
    assert n_errors > 10  # the noisy scores do make errors to show
    captions = {m.id: m.text for m in dev["memes"]}
    for card in cards:
        assert escape(captions[int(card["meme"])]) in page


def test_each_error_heading_names_its_label_and_counts_its_errors_at_0_5(dev, page):
    # The cards under a heading are chosen by the label's own score (> 0.5); the hate heading
    # called them "the hateful decision", whose counts are the label confusion's (decision
    # layer) beside it, not these.
    ids, scores = read_submission(dev["pred"])
    for task in TASKS:
        for label in ("hateful",) if task == "hate" else LABELS[task]:
            score_of = dict(zip(ids, scores[task][:, LABELS[task].index(label)]))
            has = {m.id: label in m.gold(task) for m in dev["memes"]}
            n_fp = sum(1 for i in has if not has[i] and score_of[i] > 0.5)
            n_fn = sum(1 for i in has if has[i] and score_of[i] <= 0.5)
            heading = re.search(rf'id="errors-{task}-{label}">\s*<h4>([^<]*)</h4>', page)[1]
            assert heading == (f"{label}: {n_fp} false positive{'' if n_fp == 1 else 's'}, "
                               f"{n_fn} false negative{'' if n_fn == 1 else 's'}"), task


def test_the_page_refers_to_nothing_outside_itself(dev, page):
    # (base64 has no colon, so an embedded image cannot fake a scheme here)
    assert not re.search(r"(https?|ftp|file):", page, re.IGNORECASE)
    links = re.findall(r"""\b(?:src|href|srcset|action|poster)\s*=\s*["']?([^"'\s>]*)""", page,
                       re.IGNORECASE)
    links += re.findall(r"url\(\s*['\"]?([^'\")]*)", page)
    assert links
    assert all(link.startswith(("data:", "#")) for link in links), links
    assert "@import" not in page and "<script" not in page.lower()
    # The files it scored are named with their checksums.
    for path in (dev["gold"], dev["pred"], dev["pred2"]):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in page
        assert escape(str(path)) in page


def test_without_images_the_cards_show_the_caption_alone(dev, tmp_path):
    page = run_report(dev, tmp_path)
    cards = cards_of(page)
    assert cards and all(card["thumb"] is None for card in cards)
    assert "data:image/jpeg" not in page
    assert "cards show the caption alone" in page


def test_a_missing_image_leaves_its_card_without_a_thumbnail(dev, tmp_path):
    root = tmp_path / "images"
    (root / "img").mkdir(parents=True)
    kept = set()
    for i, meme in enumerate(dev["memes"]):
        if i % 2:
            shutil.copy(dev["images"] / meme.img, root / meme.img)
            kept.add(meme.id)
    cards = cards_of(run_report(dev, tmp_path / "out", "--image-root", str(root)))
    assert {int(c["meme"]) for c in cards} - kept and {int(c["meme"]) for c in cards} & kept
    for card in cards:
        assert (card["thumb"] is not None) == (int(card["meme"]) in kept)


def test_an_unreadable_image_leaves_its_card_without_a_thumbnail(tmp_path):
    from PIL import Image

    from hateful_memes.evaluation.html_report import thumbnail

    good = tmp_path / "good.png"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(good)
    assert thumbnail(good).startswith("data:image/jpeg;base64,")
    # A PNG whose header claims 30000 x 30000 pixels, over twice PIL's limit: PIL raised, and
    # evaluate.py with it.
    data = bytearray(good.read_bytes())
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    for path, data in (("text.png", b"not an image"), ("cut.png", good.read_bytes()[:100])):
        (tmp_path / path).write_bytes(data)
    for name in ("bomb.png", "text.png", "cut.png", "missing.png"):
        assert thumbnail(tmp_path / name) is None, name


def test_a_thumbnail_is_upright_as_the_model_saw_the_image(tmp_path):
    import base64
    import io

    from PIL import Image

    from hateful_memes.evaluation.html_report import thumbnail

    # A phone photo stored sideways with EXIF orientation 6: upright it is landscape.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (200, 300)).save(path, exif=exif.tobytes())
    uri = thumbnail(path)
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert image.size == (112, 75)


def test_a_16_bit_grey_thumbnail_keeps_its_brightness(tmp_path):
    import base64
    import io

    from PIL import Image

    from hateful_memes.evaluation.html_report import thumbnail

    # Pillow's plain convert clips 16-bit grey at 255: the thumbnail would be white.
    path = tmp_path / "grey16.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(path)
    uri = thumbnail(path)
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert 100 < np.asarray(image.convert("L")).mean() < 155


def test_cards_are_capped_at_k_per_label_and_kind(dev):
    memes = dev["memes"]
    ids, scores = read_submission(dev["pred"])
    report = evaluate(memes, ids, scores)
    page = render(report, memes, dev["gold"], Predictions(dev["pred"], ids, scores), k=1)
    cards = cards_of(page)
    for task in TASKS:
        for label in ("hateful",) if task == "hate" else LABELS[task]:
            fp, fn = expected_errors(dev, task, label, k=1)
            for kind, expected in (("fp", fp), ("fn", fn)):
                assert [int(c["meme"]) for c in cards if (c["task"], c["label"], c["kind"]) ==
                        (task, label, kind)] == expected


def test_compare_with_itself_shows_zero_deltas_and_no_disagreement(dev, tmp_path):
    page = run_report(dev, tmp_path, "--compare", str(dev["pred"]))
    deltas = re.findall(r'data-delta="([^"]*)"', page)
    # hate AUROC, then per task 4 headline metrics and 4 per label.
    assert len(deltas) == 1 + sum(4 + 4 * len(LABELS[t]) for t in TASKS)
    assert set(deltas) <= {"0.0", "n/a"} and "0.0" in deltas
    assert not [c for c in cards_of(page) if c["kind"] == "disagree"]
    assert "The two files give the same scores on every meme they share." in page


def test_compare_scores_both_files_on_the_memes_both_score(dev, tmp_path, capsys):
    # The compared file: this prediction's own scores for a third of the memes. Set against
    # this file's full coverage its metrics differed; on the shared memes they are the same.
    ids, scores = read_submission(dev["pred"])
    part = tmp_path / "part.jsonl"
    write_submission(part, ids[::3], {t: s[::3] for t, s in scores.items()})
    page = run_report(dev, tmp_path / "out", "--compare", str(part))
    deltas = re.findall(r'data-delta="([^"]*)"', page)
    assert len(deltas) == 1 + sum(4 + 4 * len(LABELS[t]) for t in TASKS)
    assert set(deltas) <= {"0.0", "n/a"} and "0.0" in deltas
    assert f"both scored on the {len(ids[::3])} memes of the gold that both files score" in page
    # Files that score none of the same memes have nothing to compare.
    rest = tmp_path / "rest.jsonl"
    write_submission(rest, [i for i in ids if i not in set(ids[::3])],
                     {t: np.delete(s, np.s_[::3], axis=0) for t, s in scores.items()})
    assert main(["--gold", str(dev["gold"]), "--pred", str(part), "--out", str(tmp_path / "x"),
                 "--compare", str(rest)]) == 1
    assert "rest.jsonl shares no scored meme with the prediction" in capsys.readouterr().err


def test_a_file_without_pred_hate_shows_its_hate_auroc_as_not_predicted(dev, tmp_path):
    # "n/a" read as undefined; the file simply holds no hateful scores.
    ids, scores = read_submission(dev["pred"])
    no_hate = tmp_path / "no_hate.jsonl"
    write_submission(no_hate, ids, {t: s for t, s in scores.items() if t != "hate"})
    page = run_report(dict(dev, pred=no_hate), tmp_path / "out", "--compare", str(dev["pred"]))
    assert "hateful AUROC (binary): <b>not predicted</b>" in page
    compared = re.search(r"hateful AUROC: compared ([^,]*), this ([^,]*),", page)
    assert compared.group(2) == "not predicted" and compared.group(1) != "not predicted"
    assert compared.group(1) not in ("n/a", "")
    page = run_report(dev, tmp_path / "out2", "--compare", str(no_hate))
    compared = re.search(r"hateful AUROC: compared ([^,]*), this ([^,]*),", page)
    assert compared.group(1) == "not predicted" and compared.group(2) != "not predicted"


def test_a_hate_auroc_only_one_file_or_neither_predicts_shows_no_delta(dev, tmp_path):
    # Its delta read "n/a", which elsewhere on the page means undefined (one gold class).
    ids, scores = read_submission(dev["pred"])
    no_hate = tmp_path / "no_hate.jsonl"
    write_submission(no_hate, ids, {t: s for t, s in scores.items() if t != "hate"})

    def shown(page):
        return " ".join(re.search(r"hateful AUROC: (.*?)</p>", page, re.S).group(1).split())

    page = run_report(dict(dev, pred=no_hate), tmp_path / "one", "--compare", str(dev["pred"]))
    assert re.fullmatch(r"compared [01]\.\d{3}, this not predicted, "
                        r"no &Delta; \(only one file predicts it\)\.", shown(page))
    page = run_report(dict(dev, pred=no_hate), tmp_path / "neither", "--compare", str(no_hate))
    assert shown(page) == "neither file predicts it (no pred_hate), so there is none to compare."
    deltas = re.findall(r'data-delta="([^"]*)"', page)
    assert len(deltas) == sum(4 + 4 * len(LABELS[t]) for t in TASKS if t != "hate")


def test_compare_shows_the_memes_the_files_disagree_on_most(dev, page):
    ids_a, scores_a = read_submission(dev["pred"])
    ids_b, scores_b = read_submission(dev["pred2"])
    row_b = {id_: i for i, id_ in enumerate(ids_b)}
    gap = {id_: max(abs(scores_a[t][i] - scores_b[t][row_b[id_]]).max() for t in TASKS)
           for i, id_ in enumerate(ids_a)}
    expected = sorted(gap, key=lambda i: -gap[i])[:12]
    shown = [int(c["meme"]) for c in cards_of(page) if c["kind"] == "disagree"]
    assert shown == expected
    deltas = [float(d) for d in re.findall(r'data-delta="([^"]*)"', page) if d != "n/a"]
    assert any(d != 0 for d in deltas)


@pytest.mark.parametrize("img", ["../outside.png", "/etc/passwd", "img/../../x.png",
                                 "C:\\x.png", "..\\x.png"])
def test_image_paths_that_leave_the_root_are_refused(dev, tmp_path, img, capsys):
    rows = dev["gold"].read_text(encoding="utf-8").splitlines()
    first = dev["memes"][0]
    rows[0] = rows[0].replace(f'"{first.img}"', f'"{img.replace(chr(92), chr(92) * 2)}"')
    gold = tmp_path / "dev.json"
    gold.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code = main(["--gold", str(gold), "--pred", str(dev["pred"]), "--out", str(tmp_path / "o"),
                 "--images", str(dev["images"])])
    assert code == 1
    err = capsys.readouterr().err.strip()
    # The annotation reader refuses such a path already (data.image_path), naming file and line;
    # html_report.image_file guards the same for memes that did not come from a file.
    assert err.startswith(f"evaluate.py: error: {gold}:1: id {first.id}: img ")
    assert "image root" in err
    assert not any((tmp_path / "o").glob("report*"))


def test_a_link_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "img" / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ReportError, match="leaves the image root"):
        image_file(root, "img/link.png")
    assert image_file(root, "img/a.png") == (root / "img" / "a.png").resolve()


def test_captions_are_escaped_not_markup(dev):
    hostile = '<img src="http://x/y.png" onerror="alert(1)"> & "quotes"'
    memes = [dataclasses.replace(m, text=hostile) for m in dev["memes"]]
    ids, scores = read_submission(dev["pred"])
    page = render(evaluate(memes, ids, scores), memes, dev["gold"],
                  Predictions(dev["pred"], ids, scores))
    assert cards_of(page) and hostile not in page
    assert escape(hostile) in page and "onerror=\"" not in page
