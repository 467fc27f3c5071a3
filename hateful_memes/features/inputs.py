"""What the model reads for a list of memes: cached encoder features, or raw captions and
pixels for an encoder that is being fine-tuned."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..data.annotations import ImagePathError, Meme, image_path
from ..models.model import ModelConfig

if TYPE_CHECKING:
    from PIL import Image


class MissingImagesError(FileNotFoundError):
    pass


class UnreadableImagesError(ValueError):
    pass


SKIP_HINT = "or drop those memes with --skip-bad-images"


def image_paths(memes: Sequence[Meme], image_root: str | Path) -> list[Path]:
    """Each meme's image under `image_root`; ImagePathError for an img that would leave it."""
    paths = []
    for m in memes:
        try:
            paths.append(image_path(image_root, m.img))
        except ImagePathError as e:
            raise ImagePathError(f"meme {m.id}: {e}") from None
    return paths


def _first(paths: Sequence[object], n: int = 5) -> str:
    return "\n  ".join(str(p) for p in paths[:n])


def check_images(memes: Sequence[Meme], image_root: str | Path, source: str = "",
                 decode: bool = False) -> list[Path]:
    """All image paths, or one clear error listing how many are missing and the first few.
    With `decode`, also every image that cannot be decoded (see `unreadable_images`)."""
    paths = image_paths(memes, image_root)
    missing = [p for p in paths if not p.is_file()]
    where = f" for {source}" if source else ""
    if missing:
        raise MissingImagesError(
            f"{len(missing)} of {len(paths)} images missing{where} under image root {image_root}; "
            f"first:\n  {_first(missing)}\n"
            "Put the images there (see data/README.md), pass --image-root, or train text only "
            f"with --image-encoder none ({SKIP_HINT})."
        )
    if decode:
        bad = unreadable_images(paths)
        if bad:
            shown = [f"{p}: {why}" for p, why in bad.items()]
            raise UnreadableImagesError(
                f"{len(bad)} of {len(paths)} images cannot be read{where}; first:\n  "
                f"{_first(shown)}\nReplace those files, {SKIP_HINT}.")
    return paths


def unreadable_images(paths: Sequence[Path]) -> dict[Path, str]:
    """{path: why} for each image that does not decode, in one pass over the files.

    Each image is fully decoded (Image.load), since a truncated or corrupt file only fails
    there (Image.verify checks a PNG's chunk checksums but not its compressed pixels); JPEGs
    are decoded at 1/8 scale (Image.draft), which still reads every byte. Cost: one decode an
    image, the PNG decode experiments/bench_speed.py times beside the image encoder's forward
    pass (experiments/RESULTS.md, "Speed"): a fraction of computing the features, and with a
    warm feature cache the main per-image cost of starting a run.
    """
    from PIL import Image

    bad: dict[Path, str] = {}
    for path in dict.fromkeys(paths):
        try:
            with Image.open(path) as image:
                image.draft("RGB", (64, 64))
                image.load()
        except FileNotFoundError:
            bad[path] = "image file not found"
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            bad[path] = f"cannot read image: {e}"
    return bad


def drop_bad_images(memes: Sequence[Meme], image_root: str | Path,
                    source: str = "") -> tuple[list[Meme], list[str]]:
    """(memes whose image exists and decodes, one line per meme dropped)."""
    paths = image_paths(memes, image_root)
    missing = {p for p in paths if not p.is_file()}
    bad = unreadable_images([p for p in paths if p not in missing])
    kept, dropped = [], []
    for meme, path in zip(memes, paths):
        if path in missing:
            dropped.append(f"id {meme.id}: {path}: missing")
        elif path in bad:
            dropped.append(f"id {meme.id}: {path}: {bad[path]}")
        else:
            kept.append(meme)
    return kept, dropped


@dataclass
class Inputs:
    """Per-meme model inputs; `batch(idx)` gives what MemeModel.forward takes."""
    image: torch.Tensor | list[Path] | list["Image.Image"] | None
    text: torch.Tensor | list[str] | None
    image_transform: object = None
    text_tokenize: object = None

    def __len__(self) -> int:
        for x in (self.text, self.image):
            if x is not None:
                return len(x)
        return 0

    def subset(self, idx: Sequence[int]) -> "Inputs":
        idx = list(idx)

        def pick(x):
            if x is None:
                return None
            return x[idx] if isinstance(x, torch.Tensor) else [x[i] for i in idx]

        return Inputs(pick(self.image), pick(self.text), self.image_transform, self.text_tokenize)

    def batch(self, idx: Sequence[int]):
        image = text = None
        if isinstance(self.image, torch.Tensor):
            image = self.image[idx]
        elif self.image is not None:
            from .cache import load_rgb

            image = torch.stack([self.image_transform(_rgb(self.image[i], load_rgb))
                                 for i in idx])
        if isinstance(self.text, torch.Tensor):
            text = self.text[idx]
        elif self.text is not None:
            text = self.text_tokenize([self.text[i] for i in idx])
        return image, text


def _rgb(item, load_rgb):
    from PIL import Image

    return item if isinstance(item, Image.Image) else load_rgb(item)


class Encoders:
    """Encoders made by name once per process and shared by every split."""

    def __init__(self, image_spec: str, text_spec: str):
        self.image_spec, self.text_spec = image_spec, text_spec
        self._image = self._text = None

    @property
    def image(self):
        if self._image is None and self.image_spec != "none":
            from ..models.encoders import create_image_encoder

            self._image = create_image_encoder(self.image_spec)
        return self._image

    @property
    def text(self):
        if self._text is None and self.text_spec != "none":
            from ..models.encoders import create_text_encoder

            self._text = create_text_encoder(self.text_spec)
        return self._text


def build_inputs(memes: Sequence[Meme], cfg: ModelConfig, encoders: Encoders,
                 image_root: str | Path, cache_dir: str | Path | None, model=None,
                 source: str = "", progress: bool = True, device: str = "cpu",
                 images: Sequence["Image.Image"] | None = None,
                 image_keys: Sequence[str] | None = None) -> Inputs:
    """Inputs for `memes`. Frozen encoders give cached features; a fine-tuned encoder gets
    raw inputs and the transform/tokenizer of the model's own copy of it.

    `images` (RGB PIL images aligned with `memes`) replaces the image files: the pictures go
    through the same encoder transform and nothing is read from `image_root`; their features
    are cached by `image_keys` (by their pixels without them: features.cache.image_features)."""
    from .cache import image_features, text_features

    cache = Path(cache_dir) if cache_dir else None
    image = text = None
    transform = tokenize = None
    if cfg.image_encoder != "none":
        if images is not None:
            if len(images) != len(memes):
                raise ValueError(f"{len(images)} images for {len(memes)} memes")
            paths = list(images)
        else:
            paths = check_images(memes, image_root, source)
        if cfg.finetune_image:
            enc = model.image_encoder if model is not None else encoders.image
            image, transform = paths, enc.transform
        else:
            image = torch.from_numpy(np.ascontiguousarray(
                image_features(encoders.image, paths, cache_dir=cache, progress=progress,
                               device=device, keys=image_keys if images is not None else None)))
    if cfg.text_encoder != "none":
        texts = [m.text for m in memes]
        if cfg.finetune_text:
            enc = model.text_encoder if model is not None else encoders.text
            text, tokenize = texts, enc.tokenize
        else:
            text = torch.from_numpy(np.ascontiguousarray(
                text_features(encoders.text, texts, cache_dir=cache, progress=progress,
                              device=device)))
    return Inputs(image, text, transform, tokenize)
