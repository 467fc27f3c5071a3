"""Image files as memes for predict.py --images: listing, ids, known captions, resumable output.

Ids. A file whose stem is a number (42953.png, as in the task's data) keeps it as its id. Any
other file gets `hashed_id(key)`: the first 13 hex digits (52 bits) of the sha256 of its key,
so an id is positive, below 2**53 (exact in any JSON reader) and the same on every run. The
key is the path relative to the folder that was given (POSIX separators), or the file name
for a file given by itself. A numeric stem met twice (a/1.png, b/1.png) is kept by the first in
listing order; the second gets the hashed id. The sidecar OUT.ids.csv maps every id to its
image path, with the caption scored and whether OCR read it.

Resuming. Rows go to OUT.partial (and sidecar rows to OUT.ids.csv.partial) a chunk at a time,
each chunk appended and fsync'ed; the partial file becomes OUT by a rename only when every
image is done, so OUT is never half written. A re-run first takes up OUT.partial (dropping a
torn last line a kill may have left), or else the rows of a finished OUT, and skips their ids.

Pixels. `upright_rgb` is how every reader of a picture file (training, predict.py, the API,
the reports) turns it into what the model sees: upright as its EXIF orientation says, then any
PIL mode into RGB (`to_rgb`, which OCR also applies to the images it is handed).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..labels import TASKS
from ..runtime.files import atomic_open
from .submission import PRED_FIELDS, SubmissionError, read_submission

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
ID_LIMIT = 2 ** 53
SIDECAR_FIELDS = ("id", "image", "text", "ocr")


@dataclass(frozen=True)
class ImageItem:
    id: int
    path: Path
    key: str  # relative to the folder given, or the file name


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` in mode RGB. 16-bit grey (I;16, as Pillow opens a 16-bit greyscale PNG or TIFF)
    keeps its top 8 bits first: Pillow converts it by clipping at 255, which turns every pixel
    above 255 of 65,535 white, a blank picture. Mode I (32-bit integers) and F (floats) are
    clipped the same way, so they are scaled into 0-255 first too (`_wide_grey`). A picture
    with transparency is laid over white."""
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    elif image.mode in ("I", "F"):
        image = Image.fromarray(_wide_grey(image))
    elif image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # convert("RGB") drops alpha and shows whatever colour lies under a transparent pixel,
        # usually black: black caption text on a transparent background became a black
        # picture, which OCR read as nothing. Over white, as a page or an image viewer shows it.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def _wide_grey(image: Image.Image) -> np.ndarray:
    """A mode I or F image as 8-bit grey. Neither mode says what range its values use, so the
    values tell. Floats in [0, 1] are the usual convention for floating-point pictures: scaled
    by 255. Values in 0-255 are 8-bit grey in a wider type (what convert("I") or convert("F")
    of an L image holds): kept. Integers up to 65,535 are 16-bit grey, common from PNG and
    TIFF: their top 8 bits, as I;16 keeps (a 16-bit picture so dark that all of it is under
    256 of 65,535 is read as 8-bit: brighter, but not blank). Anything else (negative values,
    floats past 255, integers past 16 bits) has no range to go by, so its own minimum to
    maximum is stretched over 0-255.
    NaN and infinities, no value, are black."""
    pixels = np.asarray(image)
    finite = np.isfinite(pixels)
    lo, hi = (pixels[finite].min(), pixels[finite].max()) if finite.any() else (0, 0)
    pixels = np.where(finite, pixels, lo)  # (no NaN arithmetic below)
    if image.mode == "F" and lo >= 0 and hi <= 1:
        grey = np.rint(pixels * 255.0)
    elif lo >= 0 and hi <= 255:
        grey = np.rint(pixels)
    elif image.mode == "I" and lo >= 0 and hi <= 65535:
        grey = pixels >> 8
    else:
        span = float(hi) - float(lo)
        grey = np.rint((pixels - float(lo)) * (255.0 / span if span else 0.0))
    return np.where(finite, grey, 0).clip(0, 255).astype(np.uint8)


def upright_rgb(image: Image.Image) -> Image.Image:
    """`image` turned upright as its EXIF orientation says (phone photos and screenshots of
    them often carry one, and browsers apply it), in mode RGB (`to_rgb`)."""
    return to_rgb(ImageOps.exif_transpose(image))


def hashed_id(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:13], 16)


def list_images(paths: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(path, key) of every image under the folders and of every file named, in a stable
    order: folders recursively, by relative path; a file named twice is listed once."""
    out: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for arg in paths:
        arg = Path(arg)
        if arg.is_dir():
            found = sorted((p for p in arg.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda p: p.relative_to(arg).as_posix())
            pairs = [(p, p.relative_to(arg).as_posix()) for p in found]
        elif arg.is_file():
            pairs = [(arg, arg.name)]  # named explicitly: tried whatever its suffix
        else:
            raise FileNotFoundError(f"{arg}: no such file or folder")
        for path, key in pairs:
            real = path.resolve()
            if real not in seen:
                seen.add(real)
                out.append((path, key))
    return out


def assign_ids(listing: Sequence[tuple[Path, str]]) -> list[ImageItem]:
    items: list[ImageItem] = []
    owner: dict[int, Path] = {}
    for path, key in listing:
        stem = path.stem
        id_ = int(stem) if stem.isascii() and stem.isdigit() and int(stem) < ID_LIMIT else None
        if id_ is None or id_ in owner:
            id_ = hashed_id(key)
        if id_ in owner:
            raise ValueError(f"{path} and {owner[id_]} get the same id {id_}; rename one")
        owner[id_] = path
        items.append(ImageItem(id_, path, key))
    return items


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """`image,text` rows of a CSV file: {image: caption}. `image` is matched against a file's
    path as listed, its key (relative path) or its name."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"image", "text"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: expected the columns image,text; found "
                                 f"{reader.fieldnames}")
            captions: dict[str, str] = {}
            lines: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                image, text = row.get("image"), row.get("text")
                if not image or text is None:
                    raise ValueError(f"{path}:{line}: a row needs an image and a text column")
                if image in captions:
                    raise ValueError(f"{path}:{line}: {image} has a caption already (line "
                                     f"{lines[image]})")
                captions[image], lines[image] = text, line
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e.reason})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from None
    return captions


def caption_of(item: ImageItem, captions: dict[str, str]) -> str | None:
    for name in (str(item.path), item.key, item.path.name):
        if name in captions:
            return captions[name]
    return None


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.stem + ".ids.csv")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _complete_lines(path: Path) -> list[bytes]:
    """The file's complete lines; a torn last line (no newline: a kill mid-write) is cut off
    the file itself, so that what is appended next starts on a line of its own."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return [line for line in data[:end].split(b"\n") if line.strip()]


def _csv_line(row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row[k] for k in SIDECAR_FIELDS])
    return buf.getvalue()


class ResumableOutput:
    """OUT and its sidecar, written a chunk at a time through their .partial files."""

    def __init__(self, out: str | os.PathLike, tasks: Iterable[str]):
        self.out = Path(out)
        self.sidecar = sidecar_path(self.out)
        self.tasks = [t for t in TASKS if t in set(tasks)]
        self.partial, self.side_partial = _partial(self.out), _partial(self.sidecar)
        self.done: set[int] = set()
        self.side_rows: dict[int, dict] = {}

    def discard(self) -> None:
        """Remove OUT, its sidecar and their partial files, so that the next run predicts
        every image again (their rows came from other models)."""
        for path in (self.out, self.sidecar, self.partial, self.side_partial):
            path.unlink(missing_ok=True)

    def start(self) -> set[int]:
        """Take up what an earlier run left; returns the ids already predicted."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if not self.partial.exists() and self.out.exists():
            read_submission(self.out)  # a finished OUT is taken up only when it is valid
            with atomic_open(self.partial, "wb") as f:
                f.write(self.out.read_bytes())
        rows = []
        if self.partial.exists():
            for i, line in enumerate(_complete_lines(self.partial), 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SubmissionError(f"{self.partial}:{i}: damaged ({e.msg}); delete it "
                                          "to start over") from None
        fields = {PRED_FIELDS[t] for t in self.tasks}
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not isinstance(row.get("id"), int):
                raise SubmissionError(f"{self.partial}:{i}: not a prediction row with an id; "
                                      "delete it to start over")
            have = {k for k in row if k != "id"}
            if have != fields:
                raise SubmissionError(
                    f"{self.out}: holds {sorted(have)} for id {row.get('id')} but these runs "
                    f"predict {sorted(fields)}; choose another --out")
            self.done.add(row["id"])
        for path in (self.sidecar, self.side_partial):
            if path.exists():
                if path == self.side_partial:
                    _complete_lines(path)
                try:
                    with open(path, newline="", encoding="utf-8") as f:
                        for row in csv.DictReader(f):
                            try:
                                self.side_rows[int(row["id"])] = row
                            except (KeyError, TypeError, ValueError):
                                continue  # a damaged sidecar row: its id is mapped again below
                except (UnicodeDecodeError, csv.Error) as e:  # damage beyond one row
                    reason = e.reason if isinstance(e, UnicodeDecodeError) else e
                    raise SubmissionError(f"{path}: damaged ({reason}); delete it to start "
                                          "over") from None
        return set(self.done)

    def append(self, rows: list[dict], side_rows: list[dict]) -> None:
        """Sidecar rows first, so that every id in OUT.partial has its path on disk."""
        for path, text in ((self.side_partial, "".join(_csv_line(r) for r in side_rows)),
                           (self.partial, "".join(json.dumps(r) + "\n" for r in rows))):
            new = not path.exists()
            with open(path, "a", encoding="utf-8", newline="") as f:
                if new and path == self.side_partial:
                    f.write(",".join(SIDECAR_FIELDS) + "\n")
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for row in side_rows:
            self.side_rows[int(row["id"])] = row
        self.done.update(int(r["id"]) for r in rows)

    def finish(self) -> int:
        """OUT from the partial file (checked whole first) and the sidecar; returns the rows."""
        if not self.partial.exists():
            return 0
        ids, _ = read_submission(self.partial)
        with atomic_open(self.sidecar, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(SIDECAR_FIELDS) + "\n")
            for id_ in ids:
                row = self.side_rows.get(id_, {"id": id_, "image": "", "text": "", "ocr": ""})
                f.write(_csv_line(row))
        os.replace(self.partial, self.out)
        self.side_partial.unlink(missing_ok=True)
        return len(ids)
