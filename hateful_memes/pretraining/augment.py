"""The two-view augmentation of Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230).

Both views: random resized crop, horizontal flip, colour jitter (0.4, 0.4, 0.2, 0.1) with
p 0.8, grayscale with p 0.2. They differ in Gaussian blur (p 1.0 / 0.1) and solarisation
(p 0.0 / 0.2). Image size, mean and std come from the timm data config of the backbone.
"""
from __future__ import annotations

import timm
import torch
from PIL import Image, ImageFilter
from timm.data import resolve_data_config
from torchvision import transforms as T

# The paper's blur sigma range, in pixels of a 224 px image.
PAPER_SIZE = 224
PAPER_SIGMA = (0.1, 2.0)


def backbone_data_config(backbone: str, image_size: int | None = None) -> dict:
    """{"image_size", "mean", "std"} of a timm backbone, from its pretrained config (no
    weights are loaded); `image_size` overrides the config's size."""
    if not timm.is_model(backbone):
        raise ValueError(f"unknown timm backbone {backbone!r}")
    cfg = timm.get_pretrained_cfg(backbone)
    data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
    return {
        "image_size": int(image_size or data["input_size"][-1]),
        "mean": tuple(float(m) for m in data["mean"]),
        "std": tuple(float(s) for s in data["std"]),
    }


class GaussianBlur:
    """The paper's blur: with probability p, PIL's Gaussian blur with sigma ~ U(0.1, 2.0) px
    at 224 px. The sigma range scales with the image size so that a small image is not
    blurred to nothing. PIL's rather than torchvision's: torchvision convolves a dense
    kernel in float where PIL runs box blurs on 8-bit pixels, and the blur runs on every
    image of every epoch."""

    def __init__(self, p: float, image_size: int = PAPER_SIZE):
        scale = image_size / PAPER_SIZE
        self.sigma = (PAPER_SIGMA[0] * scale, PAPER_SIGMA[1] * scale)
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        # torch's RNG, as torchvision's transforms: seeding it repeats the augmentations
        if torch.rand(()) >= self.p:
            return img
        sigma = float(torch.empty(()).uniform_(*self.sigma))
        return img.filter(ImageFilter.GaussianBlur(sigma))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, sigma={self.sigma})"


class Solarization:
    """The paper's solarisation (PIL's ImageOps.solarize, threshold 128) with probability p."""

    def __init__(self, p: float):
        self.p = p
        self.solarize = T.RandomSolarize(threshold=128, p=p)

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.solarize(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class Transform:
    """PIL image -> (y1, y2), two normalised tensors (3, S, S) of different distortions."""

    def __init__(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 crop_scale: tuple[float, float] = (0.08, 1.0), flip: bool = True):
        def view(blur_p: float, solarize_p: float) -> T.Compose:
            return T.Compose([
                T.RandomResizedCrop(image_size, scale=crop_scale,
                                    interpolation=T.InterpolationMode.BICUBIC),
                T.RandomHorizontalFlip(p=0.5 if flip else 0.0),
                T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4,
                                             saturation=0.2, hue=0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                GaussianBlur(blur_p, image_size),
                Solarization(solarize_p),
                T.ToTensor(),
                T.Normalize(mean=mean, std=std),
            ])

        self.transform = view(blur_p=1.0, solarize_p=0.0)
        self.transform_prime = view(blur_p=0.1, solarize_p=0.2)

    @classmethod
    def for_backbone(cls, backbone: str, image_size: int | None = None,
                     **kwargs) -> "Transform":
        cfg = backbone_data_config(backbone, image_size)
        return cls(cfg["image_size"], cfg["mean"], cfg["std"], **kwargs)

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        # Pictures come decoded by data.images (pretrain.py's loader calls load_rgb), which
        # scales 16-bit, int and float grey; convert here covers 8-bit modes of other callers,
        # and pretraining stays below data in the package's layers.
        img = img.convert("RGB")
        return self.transform(img), self.transform_prime(img)
