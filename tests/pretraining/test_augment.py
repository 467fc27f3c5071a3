import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hateful_memes.pretraining.augment import (GaussianBlur, Solarization, Transform,
                                               backbone_data_config)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_data_config_comes_from_timm():
    for name in ("resnet18", "tf_efficientnet_lite0", "test_resnet"):
        cfg = timm.get_pretrained_cfg(name)
        data = backbone_data_config(name)
        assert data == {"image_size": cfg.input_size[-1], "mean": cfg.mean, "std": cfg.std}
    assert backbone_data_config("resnet18", 64)["image_size"] == 64
    with pytest.raises(ValueError, match="no_such_net"):
        backbone_data_config("no_such_net")


def test_views_have_the_size_and_the_normalisation_of_the_backbone():
    transform = Transform.for_backbone("resnet18", image_size=48)
    mean = torch.tensor(timm.get_pretrained_cfg("resnet18").mean).view(3, 1, 1)
    std = torch.tensor(timm.get_pretrained_cfg("resnet18").std).view(3, 1, 1)
    # Black stays black under every distortion (solarisation inverts only >= 128), so the
    # views are exactly the normalised zero.
    black = Image.new("RGB", (80, 60))
    y1, y2 = transform(black)
    for y in (y1, y2):
        assert y.shape == (3, 48, 48)
        assert torch.allclose(y, ((0 - mean) / std).expand(3, 48, 48), atol=1e-6)
    # a grayscale (mode "L") image still gives 3 channels
    y1, _ = transform(Image.new("L", (40, 40), 100))
    assert y1.shape == (3, 48, 48)


def test_two_views_differ_and_only_the_second_is_solarised():
    transform = Transform(32, mean=(0.0,) * 3, std=(1.0,) * 3)
    # White under brightness jitter stays >= 0.6 * 255 >= 128; solarised it becomes <= 102.
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    n = 300
    solarised = np.zeros((2, n), dtype=bool)
    for i in range(n):
        y1, y2 = transform(white)
        solarised[0, i] = y1.mean() < 0.45
        solarised[1, i] = y2.mean() < 0.45
    assert not solarised[0].any()
    assert 0.1 < solarised[1].mean() < 0.3  # p = 0.2; 4 standard deviations is +-0.09
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    y1, y2 = transform(noise)
    assert not torch.equal(y1, y2)


def test_no_flip_keeps_orientation():
    # a full-size crop of a left-dark, right-bright image: only a flip could swap the halves
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[:, 16:] = 255
    transform = Transform(32, (0.0,) * 3, (1.0,) * 3, crop_scale=(1.0, 1.0), flip=False)
    for _ in range(20):
        for y in transform(Image.fromarray(img)):
            left, right = y[:, :, :16].mean(), y[:, :, 16:].mean()
            # solarisation may invert the bright half
            assert left < right or right < 0.45


def test_blur_scales_with_the_image_and_obeys_p():
    assert GaussianBlur(1.0).sigma == (0.1, 2.0)  # the paper's, at 224 px
    assert GaussianBlur(1.0, image_size=56).sigma == pytest.approx((0.025, 0.5))
    # a 1 px checkerboard's contrast is what any blur (sigma >= 0.1) removes first
    checker = np.indices((32, 32)).sum(0) % 2 * 255
    img = Image.fromarray(np.stack([checker] * 3, -1).astype(np.uint8))
    contrast = np.asarray(img).std()

    def blurred(p: float, n: int) -> np.ndarray:
        blur = GaussianBlur(p)
        return np.array([np.asarray(blur(img)).std() < contrast for _ in range(n)])

    assert blurred(1.0, 50).all()
    assert not blurred(0.0, 50).any()
    assert 0.02 < blurred(0.1, 400).mean() < 0.18  # p = 0.1; 4 standard deviations: 0.06


def test_solarization_inverts_bright_pixels_only():
    img = Image.fromarray(np.array([[[0, 127, 128], [200, 255, 30]]], dtype=np.uint8))
    out = np.asarray(Solarization(1.0)(img))
    assert out.tolist() == [[[0, 127, 127], [55, 0, 30]]]
    assert np.array_equal(np.asarray(Solarization(0.0)(img)), np.asarray(img))


def test_the_views_are_the_papers_asymmetric_pair():
    # Only solarisation's asymmetry is seen in the pixels above; a swap of the blurs would not be.
    transform = Transform(32, mean=(0.0,) * 3, std=(1.0,) * 3)

    def p_of(view, kind):
        return [t.p for t in view.transforms if isinstance(t, kind)]

    assert p_of(transform.transform, GaussianBlur) == [1.0]
    assert p_of(transform.transform_prime, GaussianBlur) == [0.1]
    assert p_of(transform.transform, Solarization) == [0.0]
    assert p_of(transform.transform_prime, Solarization) == [0.2]
