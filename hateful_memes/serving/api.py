"""The Python API: from meme images (and their captions, when known) to scores and labels.

    from hateful_memes import MemeClassifier

    clf = MemeClassifier.load("runs/demo/taskA", "runs/demo/taskB")   # device, OCR: "auto"
    for result in clf.predict(images=["meme.png", open("b.jpg", "rb").read()],
                              texts=[None, "a caption someone typed"]):
        print(result.labels, result.text, result.ocr)     # result.to_dict() for JSON

`predict(..., cache_dir=DIR)` keeps the images' features and the captions OCR reads in the
feature cache there (see ocr_cache.py; keyed by the image file's bytes, as train.py keys the
files, and for captions by everything that decides the engine's output), so a second
prediction of the same images computes none of them again; without it nothing is kept.

`MemeClassifier` holds one or more train.py runs (an A run, a B run, an AB run, or A and B
together) and scores through `scores()`, the one code path that predict.py (annotation files
and image folders) and the service both use: each run's `RunPredictor` scores, and `merge`
joins the runs' tasks (their hateful scores averaged). `predict()` adds what people need
around it: images as paths, bytes or PIL images, captions read by OCR where none is given,
and the consistent label sets of `decision.decide_all`.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from ..data.annotations import Meme
from ..data.images import upright_rgb
from ..engine.predictor import RunPredictor
from ..features.cache import ImageReadError, pixels_digest
from ..labels import LABELS, TASKS
from ..scoring.decision import decide_all
from . import ocr_cache

ImageLike = Union[str, os.PathLike, bytes, bytearray, Image.Image]


class ImageTooLargeError(ImageReadError):
    """An image whose pixel count is over the limit (a decompression bomb, or just too big)."""


def open_image(item: ImageLike, max_pixels: int | None = None, name: str | None = None
               ) -> Image.Image:
    """An RGB PIL image from a path, the bytes of an image file, or a PIL image.

    Turned upright as its EXIF orientation says; GIFs (and other animations) give their first
    frame. Raises ImageReadError naming `name` (or the path) for a missing, empty or
    undecodable file, and ImageTooLargeError when the image has more than `max_pixels` pixels
    (default: PIL's own decompression-bomb limit) - checked from the header, before any pixel
    is decoded.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    # upright_rgb: as features.cache.load_rgb reads the files of training and predict.py
    # --input, and as a browser shows the picture.
    if isinstance(item, Image.Image):
        _check_pixels(item.size, limit, name or "image")
        return upright_rgb(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        name = name or "image bytes"
        if not len(item):
            raise ImageReadError(f"{name}: empty file")
        source = io.BytesIO(bytes(item))
    elif isinstance(item, (str, os.PathLike)):
        name = name or str(item)
        source = Path(item)
        if source.is_file() and source.stat().st_size == 0:
            raise ImageReadError(f"{name}: empty file")
    else:
        raise TypeError(f"{name or 'image'}: expected a path, bytes or a PIL image, got "
                        f"{type(item).__name__}")
    try:
        with Image.open(source) as image:
            _check_pixels(image.size, limit, name)
            return upright_rgb(image)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{name}: image file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file (no image format recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # The warning arrives as an exception where warnings are errors (the service).
        raise ImageTooLargeError(f"{name}: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageReadError(f"{name}: not a readable image ({e})") from None


def open_keyed(item: ImageLike, max_pixels: int | None = None, name: str | None = None
               ) -> tuple[Image.Image, str]:
    """`open_image`'s picture and its cache key: the sha256 of the bytes it is decoded from, as
    train.py and predict.py --input key an image file (a file is read once, so that the key
    and the pixels are of the same bytes even if it changes meanwhile), or for a PIL image the
    picture's pixels (features.cache.pixels_digest)."""
    if isinstance(item, (str, os.PathLike)):
        name = name or str(item)
        try:
            item = Path(item).read_bytes()
        except FileNotFoundError:
            raise ImageReadError(f"{name}: image file not found") from None
        except OSError as e:  # a folder, no permission
            raise ImageReadError(f"{name}: cannot read image file: {e.strerror or e}") from None
    picture = open_image(item, max_pixels, name)
    if isinstance(item, Image.Image):
        return picture, pixels_digest(picture)
    return picture, hashlib.sha256(item).hexdigest()


def _check_pixels(size: tuple[int, int], limit: int | None, name: str) -> None:
    if limit and size[0] * size[1] > limit:
        raise ImageTooLargeError(f"{name}: {size[0]}x{size[1]} = {size[0] * size[1]} pixels, "
                                 f"over the limit of {limit} (a decompression bomb?)")


def merge(per_run: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One score dict from several runs: each task from the one run that predicts it, the
    hateful scores averaged over all runs."""
    merged: dict[str, np.ndarray] = {}
    for scores in per_run:
        for task, s in scores.items():
            if task != "hate" and task in merged:
                raise ValueError(f"two runs both predict {task!r}; give one run per task")
            if task != "hate":
                merged[task] = s
    merged["hate"] = np.mean([scores["hate"] for scores in per_run], axis=0).astype(np.float32)
    # In labels.TASKS' order (hate, pc, attack), as submissions, the service and the README
    # show them, whatever order the runs were given in.
    return {t: merged[t] for t in TASKS if t in merged}


@dataclass
class Prediction:
    """One meme's result. `pred_*` are the scores a submission holds (each label's threshold
    folded onto 0.5; None for a task no run predicts); `labels` is the decision shown to people
    ({"hate": "hateful" | "not_hateful", "pc": [...], "attack": [...]}, from
    decision.decide_all: hateful when a task shows a real label);
    `text` is the caption scored and `ocr` whether OCR read it off the image."""
    text: str
    ocr: bool
    pred_hate: dict[str, float]
    pred_pc: dict[str, float] | None
    pred_attack: dict[str, float] | None
    labels: dict

    def to_dict(self) -> dict:
        return asdict(self)


class MemeClassifier:
    """Trained runs joined into one classifier, with OCR for memes that come without a caption.

    `ocr`: an engine name for ocr.create_ocr ("auto", "easyocr", "rapidocr", "tesseract"),
    "none" (every meme then needs a caption), or an object with `read(images) -> captions`
    (and `identity`, ocr.engine_identity's string, for its captions to be cached).
    The engine is loaded at the first meme that needs it (or by `load_ocr()`); a meme whose
    caption the cache holds needs none.
    Not thread-safe: one caller at a time (the service runs it in a single worker).
    """

    def __init__(self, runs: Sequence[RunPredictor], ocr="auto", device: str = "auto"):
        if not runs:
            raise ValueError("a classifier needs at least one run")
        seen: dict[str, str] = {}
        for run in runs:
            for task in run.cfg.tasks:
                if task in seen:
                    raise ValueError(f"runs {seen[task]} and {run.name} both predict {task!r}; "
                                     "give one run per task")
                seen[task] = run.name
        self.runs = list(runs)
        self._ocr = None if isinstance(ocr, str) else ocr
        self.ocr_spec = ocr if isinstance(ocr, str) else getattr(ocr, "name", type(ocr).__name__)
        self._device = device
        self._identity: str | None = None  # the named engine's, found before it is loaded

    @classmethod
    def load(cls, *run_dirs: str | os.PathLike, device: str = "auto",
             ocr="auto") -> "MemeClassifier":
        """Runs from their train.py directories (or checkpoint files); `device` as train.py's
        (auto: cuda when there is one), used by the OCR engine too where it can run there
        (rapidocr and tesseract read on the CPU)."""
        if len(run_dirs) == 1 and isinstance(run_dirs[0], (list, tuple)):
            run_dirs = tuple(run_dirs[0])
        return cls([RunPredictor.load(r, device) for r in run_dirs], ocr=ocr, device=device)

    @property
    def tasks(self) -> tuple[str, ...]:
        own = {t for run in self.runs for t in run.cfg.tasks}
        return ("hate", *(t for t in LABELS if t in own))

    @property
    def device(self) -> str:
        return self.runs[0].device

    @property
    def needs_images(self) -> bool:
        """Whether any run reads pictures (text-only runs need images only for OCR)."""
        return any(run.cfg.image_encoder != "none" for run in self.runs)

    def info(self) -> dict:
        return {"runs": [run.name for run in self.runs], "tasks": list(self.tasks),
                "device": self.device, "ocr": self.ocr_spec}

    def load_ocr(self):
        """The OCR engine, loaded now if it is not yet."""
        if self._ocr is None:
            if self.ocr_spec == "none":
                raise ValueError("this classifier has no OCR (ocr='none'): give every meme a "
                                 "caption")
            from .ocr import CPU_ONLY, create_ocr

            # The classifier's device is the model's (--device cuda): a CPU-only engine reads
            # on the CPU beside it rather than refusing the model's GPU.
            device = "cpu" if self.ocr_spec in CPU_ONLY else self._device
            self._ocr = create_ocr(self.ocr_spec, device)
            self.ocr_spec = self._ocr.name
        return self._ocr

    def ocr_identity(self) -> str | None:
        """What decides the OCR engine's captions (ocr.engine_identity), the loaded engine's
        own once it is loaded; None for an engine that cannot say (its captions are never
        cached) and for ocr="none"."""
        if self._ocr is not None:
            return getattr(self._ocr, "identity", None)
        if self.ocr_spec == "none":
            return None
        if self._identity is None:
            from .ocr import CPU_ONLY, engine_identity

            device = "cpu" if self.ocr_spec in CPU_ONLY else self._device
            self._identity = engine_identity(self.ocr_spec, device)
        return self._identity

    def cached_captions(self, keys: Sequence[str], cache_dir) -> dict[str, str]:
        """The captions the cache under `cache_dir` holds for the image keys `keys`
        (`open_keyed`) from this classifier's engine; the engine is not loaded."""
        return ocr_cache.lookup(cache_dir, self.ocr_identity(), keys)

    def read_captions(self, pictures: Sequence[Image.Image],
                      keys: Sequence[str | None] | None = None, cache_dir=None) -> list[str]:
        """OCR captions of `pictures` (RGB PIL images): those the cache under `cache_dir` holds
        for their `keys` (`open_keyed`; None: not cached) come from there, the engine
        reads the others (loaded only if there are any) and they are stored."""
        keys = [None] * len(pictures) if keys is None else list(keys)
        return ocr_cache.read_captions(pictures, keys, cache_dir, self.ocr_identity(),
                                       self.load_ocr)

    def scores(self, memes: Sequence[Meme], image_root=None, images=None, cache_dir=None,
               prior: float | str | None = None, fold: bool = True,
               progress: bool = False, image_keys=None) -> dict[str, np.ndarray]:
        """Merged scores of every run for `memes` (the one scoring path): pictures from the
        files under `image_root`, or `images` (RGB PIL images aligned with `memes`, their
        features cached by `image_keys` as `open_keyed` gives them, else by their pixels);
        captions from the memes. `prior`/`fold` as RunPredictor.finish."""
        per_run = [run.scores(memes, image_root, cache_dir, prior=prior, fold=fold,
                              progress=progress, images=images, image_keys=image_keys)
                   for run in self.runs]
        return merge(per_run)

    def predict(self, images: Sequence[ImageLike] | None = None,
                texts: Sequence[str | None] | None = None,
                prior: float | str | None = None, max_pixels: int | None = None,
                progress: bool = False, cache_dir=None,
                image_keys: Sequence[str | None] | None = None) -> list[Prediction]:
        """One Prediction per meme. `images`: paths, image-file bytes or PIL images; `texts`:
        the captions where known (None, or a None entry: read by OCR from the image).
        `cache_dir`: the feature cache (predict.py's --cache-dir), where the images' and
        captions' features and the captions OCR reads are kept and looked up (an image keyed
        by the file's bytes, as train.py keys it, a PIL image by its pixels: `open_keyed`);
        None: nothing is cached, every caption is read. `image_keys`: for PIL images the caller
        decoded from files (predict.py --images), each one's key as `open_keyed` gave it (None:
        its pixels), so that they share the cache entries of those files; a wrong key would
        serve another image's features and caption.

        Images may be left out only when every caption is given and no run reads pictures.
        All memes of a call are decoded and scored together (the encoders batch them), so
        call it in chunks for a large set. `prior` as RunPredictor.finish ("em": estimated
        over this call's memes).
        """
        if images is None and texts is None:
            raise ValueError("give images, texts, or both")
        # One image or caption on its own would be iterated: a path as one meme per letter, the
        # bytes of a file as one per byte, a caption as one per character.
        if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
            raise TypeError(f"images: expected a list of images, got a single "
                            f"{type(images).__name__}: give [image] for one meme")
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of captions (None for OCR), got a single "
                            "str: give [text] for one meme")
        n = len(images) if images is not None else len(texts)
        if texts is None:
            texts = [None] * n
        if len(texts) != n:
            raise ValueError(f"{n} images but {len(texts)} texts")
        if image_keys is not None and len(image_keys) != n:
            raise ValueError(f"{n} images but {len(image_keys)} image_keys")
        for i, text in enumerate(texts):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"text {i}: expected a str or None, got {type(text).__name__}")
        if images is None:
            if any(t is None for t in texts):
                raise ValueError("memes without a caption need their image, for OCR")
            if self.needs_images:
                raise ValueError(f"runs {', '.join(r.name for r in self.runs)} read pictures: "
                                 "give the images")
            pictures = keys = None
        else:
            pictures, keys = _open_all(images, max_pixels, bool(cache_dir), image_keys)
        todo = [i for i, t in enumerate(texts) if t is None]
        by_ocr = set(todo)
        captions = list(texts)
        if todo and self._ocr is None and self.ocr_spec == "none":
            # Which memes lack a caption, and the two ways out (load_ocr's own message names
            # neither).
            names = [f"image {i}" + (f" ({images[i]})" if isinstance(images[i], (
                str, os.PathLike)) else "") for i in todo]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                            else "")
            has = "has" if len(names) == 1 else "have"
            raise ValueError(f"{shown} {has} no caption, and this classifier has no OCR "
                             "(ocr='none'): give the caption in texts=, or load the classifier "
                             "with an OCR engine (ocr='auto')")
        if todo:
            read = self.read_captions([pictures[i] for i in todo],
                                      [keys[i] for i in todo] if keys else None, cache_dir)
            for i, caption in zip(todo, read):
                captions[i] = caption
        if n == 0:
            return []
        memes = [Meme(id=i, img="", text=c) for i, c in enumerate(captions)]
        scores = self.scores(memes, images=pictures, cache_dir=cache_dir or None, prior=prior,
                             progress=progress, image_keys=keys)
        decided = decide_all(scores)
        out = []
        for i in range(n):
            preds = {t: dict(zip(LABELS[t], map(float, scores[t][i]))) if t in scores else None
                     for t in ("hate", "pc", "attack")}
            labels = {t: list(decided[i][t]) for t in TASKS if t in decided[i]}
            labels["hate"] = decided[i]["hate"][0]
            out.append(Prediction(text=captions[i], ocr=i in by_ocr,
                                  pred_hate=preds["hate"], pred_pc=preds["pc"],
                                  pred_attack=preds["attack"], labels=labels))
        return out


def _open_all(images: Sequence[ImageLike], max_pixels: int | None, keyed: bool,
              given: Sequence[str | None] | None) -> tuple[list[Image.Image], list[str] | None]:
    """The pictures of `images` and, when `keyed`, their cache keys: the `given` ones, else
    `open_keyed`'s (a file's bytes are then read once, for both)."""
    pictures, keys = [], []
    for i, item in enumerate(images):
        name = None if isinstance(item, (str, os.PathLike)) else f"image {i}"
        key = given[i] if given is not None else None
        if keyed and key is None:
            picture, key = open_keyed(item, max_pixels, name)
        else:
            picture = open_image(item, max_pixels, name)
        pictures.append(picture)
        keys.append(key)
    return pictures, keys if keyed else None
