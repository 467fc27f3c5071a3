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
    rgb = Image.new("RGB", (2, 2))
    assert images.to_rgb(rgb) is rgb


def test_a_transparent_picture_is_laid_over_white():
    # Black caption text on a transparent background: convert("RGB") shows the black stored
    # under the transparent pixels, a black picture with the text gone.
    text_on_nothing = np.zeros((1, 3, 4), np.uint8)
    text_on_nothing[0, 1, 3] = 255  # the one opaque (text) pixel
    rgba = Image.fromarray(text_on_nothing, "RGBA")
    assert np.asarray(images.to_rgb(rgba))[0].tolist() == [[255] * 3, [0] * 3, [255] * 3]
    half = Image.new("RGBA", (1, 1), (10, 20, 30, 128))
    assert images.to_rgb(half).getpixel((0, 0)) == (132, 137, 142)
    grey_alpha = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    assert np.asarray(images.to_rgb(grey_alpha))[0, :, 0].tolist() == [255, 0]
    # A palette picture whose index 0 is its transparent colour (as GIFs keep it)
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
    pal.info["transparency"] = 0
    assert np.asarray(images.to_rgb(pal))[0].tolist() == [[255] * 3, [0] * 3]


def _grey(rgb: Image.Image) -> list[int]:
    assert rgb.mode == "RGB"
    pixels = np.asarray(rgb)[0]
    assert (pixels == pixels[:, :1]).all()  # grey stays grey
    return pixels[:, 0].tolist()


def test_32_bit_int_grey_of_16_bit_values_keeps_its_brightness_in_rgb():
    # Mode I, as Pillow opens a 32-bit integer TIFF (and older Pillows a 16-bit PNG), holding
    # 16-bit values: Pillow's convert("RGB") clips them to [0, 255, 255, 255, 255], white.
    grey = Image.fromarray(np.array([[0, 255, 256, 32768, 65535]], np.int32))
    assert grey.mode == "I"
    assert _grey(images.to_rgb(grey)) == [0, 0, 1, 128, 255]
    # 8-bit values widened to mode I (an L image's convert("I")) stay as they were.
    assert _grey(images.to_rgb(Image.fromarray(np.array([[0, 7, 200, 255]], np.int32)))) == [
        0, 7, 200, 255]
    # Values past 16 bits, or below 0, have no range to go by: their own span is stretched.
    wide = Image.fromarray(np.array([[-100, 0, 100_000, 199_900]], np.int32))
    assert _grey(images.to_rgb(wide)) == [0, 0, 128, 255]


def test_float_grey_in_0_1_keeps_its_brightness_in_rgb():
    # Mode F, as Pillow opens a floating-point TIFF: values in [0, 1] by the usual convention,
    # which Pillow's convert("RGB") truncates to [0, 0, 0, 0, 1], black.
    grey = Image.fromarray(np.array([[0.0, 0.25, 0.5, 0.999, 1.0]], np.float32))
    assert grey.mode == "F"
    assert _grey(images.to_rgb(grey)) == [0, 64, 128, 255, 255]
    # 8-bit values as floats (an L image's convert("F")) stay as they were.
    as_float = Image.fromarray(np.array([[0.0, 7.0, 200.0, 255.0]], np.float32))
    assert _grey(images.to_rgb(as_float)) == [0, 7, 200, 255]
    # Any other span is stretched to 0-255; NaN (no value) is black.
    odd = Image.fromarray(np.array([[-1.0, 0.0, 1.0, np.nan]], np.float32))
    assert _grey(images.to_rgb(odd)) == [0, 128, 255, 0]


def test_a_float_tiff_file_reads_with_its_brightness(tmp_path):
    path = tmp_path / "scan.tif"
    Image.fromarray(np.full((4, 6), 0.5, np.float32)).save(path)
    with Image.open(path) as image:
        assert image.mode == "F"
        assert np.asarray(images.upright_rgb(image)).tolist() == [[[128] * 3] * 6] * 4
