"""data/images.py: image folders as memes (ids, known captions) for predict.py --images."""
import numpy as np
import pytest
from PIL import Image

from hateful_memes.data import images
from hateful_memes.data.submission import SubmissionError


def test_ids_are_numeric_stems_else_a_stable_hash(tmp_path):
    for rel in ("a/1.png", "b/1.png", "b/x.gif", "c/007.webp", "c/2.JPG", "c/no.txt"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = images.assign_ids(images.list_images([tmp_path, tmp_path / "b" / "x.gif"]))
    by_key = {i.key: i.id for i in items}
    assert list(by_key) == ["a/1.png", "b/1.png", "b/x.gif", "c/007.webp", "c/2.JPG"]
    assert by_key["a/1.png"] == 1 and by_key["c/007.webp"] == 7 and by_key["c/2.JPG"] == 2
    assert by_key["b/1.png"] == images.hashed_id("b/1.png")  # 1 was taken
    assert by_key["b/x.gif"] == images.hashed_id("b/x.gif")
    assert all(0 < i < 2 ** 53 for i in by_key.values())
    with pytest.raises(FileNotFoundError, match="nowhere"):
        images.list_images([tmp_path / "nowhere"])


def test_captions_are_matched_by_path_key_or_name_and_bad_rows_are_named(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel in ("sub/cat.png", "dog.png", "owl.png"):
        (tmp_path / rel).write_bytes(b"")
    csv = tmp_path / "known.csv"
    csv.write_text("image,text\nsub/cat.png,a cat\ndog.png,a dog\n"
                   f"{tmp_path / 'owl.png'},an owl\n", encoding="utf-8")
    captions = images.read_captions(csv)
    items = {i.key: i for i in images.assign_ids(images.list_images([tmp_path]))}
    assert images.caption_of(items["sub/cat.png"], captions) == "a cat"  # its key
    assert images.caption_of(items["dog.png"], captions) == "a dog"  # its name
    assert images.caption_of(items["owl.png"], captions) == "an owl"  # its path as listed
    csv.write_text("image,text\ndog.png,a dog\n,no image\n")
    with pytest.raises(ValueError, match=r"known.csv:3: a row needs an image and a text"):
        images.read_captions(csv)
    csv.write_bytes(b"image,text\ndog.png,\xff\xfe\n")
    with pytest.raises(ValueError, match="known.csv: not UTF-8"):
        images.read_captions(csv)


@pytest.mark.parametrize("damage", [b"\xff\xfe,x.png,,0\n", b'5,"' + b"x" * 200_000 + b'",,0\n'],
                         ids=["not UTF-8", "a field over csv's size limit"])
def test_a_damaged_sidecar_is_named(tmp_path, damage):
    out = tmp_path / "out.jsonl"
    side = images.sidecar_path(out).with_name(images.sidecar_path(out).name + ".partial")
    side.write_bytes(b"id,image,text,ocr\n" + damage)
    with pytest.raises(SubmissionError, match=f"{side.name}: damaged .*; delete it"):
        images.ResumableOutput(out, ["pc"]).start()


def test_16_bit_grey_keeps_its_brightness_in_rgb():
    grey = np.array([[0, 255, 256, 32768, 65535]], np.uint16)
    little = Image.fromarray(grey)
    big = Image.frombytes("I;16B", (5, 1), grey.astype(">u2").tobytes())
    for image in (little, big):
        rgb = images.to_rgb(image)
        assert image.mode.startswith("I;16") and rgb.mode == "RGB"
        # Pillow's own convert("RGB") gives [0, 255, 255, 255, 255]: a white picture.
        assert np.asarray(rgb)[0].tolist() == [[v] * 3 for v in (0, 0, 1, 128, 255)]
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 40))
    assert images.to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30)
    rgb = Image.new("RGB", (2, 2))
    assert images.to_rgb(rgb) is rgb
