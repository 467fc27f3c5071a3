import pytest

from hateful_memes.data import ImagePathError, Meme
from hateful_memes.inputs import check_images, image_paths


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
