import numpy as np
import pytest
import torch
from PIL import Image

from hateful_memes.data.annotations import ImagePathError, Meme
from hateful_memes.features.inputs import (Inputs, MissingImagesError, UnreadableImagesError,
                                           check_images, drop_bad_images, image_paths,
                                           unreadable_images)


def test_image_paths_are_joined_under_the_root(tmp_path):
    memes = [Meme(1, "img/1.png", "a"), Meme(2, "img/sub/../2.png", "b")]
    assert image_paths(memes, tmp_path) == [tmp_path / "img/1.png", tmp_path / "img/sub/../2.png"]


@pytest.mark.parametrize("img, problem", [("../../etc/hostname", "climbs out of the image root"),
                                          ("/etc/hostname", "is absolute")])
def test_memes_made_in_code_cannot_reach_outside_the_root(tmp_path, img, problem):
    # Memes need not come from read_annotations (which refuses these paths already): a
    # service builds them from requests, so the join itself refuses them too.
    memes = [Meme(1, "img/1.png", "a"), Meme(7, img, "b")]
    for build in (image_paths, check_images):
        with pytest.raises(ImagePathError) as err:
            build(memes, tmp_path)
        assert str(err.value) == (f"meme 7: img {img!r} {problem}; image paths must stay under "
                                  f"the image root {tmp_path}")


def _meme(i):
    return Meme(i, f"img/{i:05d}.png", "a caption", None, None, None)


def bad_images(root):
    """Four memes with an image that cannot be read, each for another reason, and two fine."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    good = Image.new("RGB", (32, 32), (10, 200, 30))
    good.save(root / "img" / "00000.png")
    good.save(root / "img" / "00005.png")
    (root / "img" / "00001.png").write_bytes(b"")  # zero bytes
    good.save(root / "img" / "00002.png")
    data = (root / "img" / "00002.png").read_bytes()
    (root / "img" / "00002.png").write_bytes(data[: len(data) // 2])  # truncated
    (root / "img" / "00003.png").write_text("<html>not an image</html>")
    # far past PIL's pixel limit (lowered by the test), in a small file: a decompression bomb
    Image.new("L", (3000, 3000)).save(root / "img" / "00004.png")
    return [_meme(i) for i in range(6)]


@pytest.fixture
def small_pixel_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)


def test_every_unreadable_image_is_found_in_one_pass(tmp_path, small_pixel_limit):
    memes = bad_images(tmp_path)
    paths = [tmp_path / m.img for m in memes]
    bad = unreadable_images(paths)
    assert sorted(bad) == paths[1:5]
    assert "decompression bomb" in bad[paths[4]].lower()
    with pytest.raises(UnreadableImagesError) as e:
        check_images(memes, tmp_path, "train.json", decode=True)
    message = str(e.value)
    assert message.startswith("4 of 6 images cannot be read for train.json")
    assert all(str(p) in message for p in paths[1:5]) and "--skip-bad-images" in message
    # without decode only existence is checked (what build_inputs does, cheaply)
    assert check_images(memes, tmp_path) == paths


def test_drop_bad_images_keeps_the_readable_ones_and_says_why(tmp_path, small_pixel_limit):
    memes = bad_images(tmp_path) + [_meme(9)]  # 00009.png does not exist
    kept, dropped = drop_bad_images(memes, tmp_path)
    assert [m.id for m in kept] == [0, 5]
    assert len(dropped) == 5 and dropped[0].startswith("id 1: ") and "missing" in dropped[-1]


def test_missing_images_are_still_reported_first(tmp_path):
    with pytest.raises(MissingImagesError, match="1 of 1 images missing"):
        check_images([_meme(7)], tmp_path, decode=True)


def test_raw_image_inputs_take_files_and_in_memory_images_alike(tmp_path):
    # A fine-tuned image encoder gets raw pictures: from files (predict.py --input) or already
    # decoded (the API and the service); both go through the same transform.
    pictures = [Image.new("RGB", (4, 3), (10 * i, 20, 30)) for i in range(3)]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(tmp_path / f"{i}.png")
        picture.save(paths[-1])

    def transform(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32))

    from_files = Inputs(paths, None, image_transform=transform).batch([2, 0])[0]
    in_memory = Inputs(pictures, None, image_transform=transform).batch([2, 0])[0]
    assert torch.equal(from_files, in_memory)
    assert from_files[0, 0, 0, 0] == 20 and from_files[1, 0, 0, 0] == 0  # batch order kept
