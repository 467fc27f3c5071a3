"""Frozen encoder features: computed once per distinct input, cached on disk.

The cache is CACHE/features.sqlite3 (hateful_memes/features/store.py), keyed by a space and an
item key. The space, `{image,text}/{spec}-{h}`, hashes the encoder spec, its preprocessing (the
transform, or the tokenizer and its max length) and its weights, so that a re-trained checkpoint
at the same path, or a changed transform, never reads stale features. The item key is the sha256
of an image file's bytes (also for a picture decoded from them, where the caller says so), of
the pixels of a picture given in memory, or of a caption. A file is hashed for the lookup, and
the bytes decoded for its features are hashed again: a file that changed in between is an
error, not features of its new contents stored under its old key. A call looks up its keys,
computes only those still missing and stores them in batches of FLUSH_ROWS rows, each one
transaction, so a killed run keeps what it flushed; an entry whose checksum fails is reported
and recomputed.

Under torchrun (torch.distributed initialised) every rank passes the same items: the ranks hash
a share of the image files each, deal out the items that no rank found in the cache, compute
and store their own share (the store takes concurrent writers), and gather the rest, so that
every rank returns what one process returns. A failure on one rank is raised on all of them.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data.images import upright_rgb
from ..runtime.commands import EVERY_RANK, raised_on
from ..runtime.distributed import gather, rank_world
from ..runtime.progress import bar as progress_bar, plural
from .store import FILENAME, FeatureStore, migrate_shards

if TYPE_CHECKING:
    from ..models.encoders import ImageEncoder, TextEncoder

FLUSH_ROWS = 2048


class ImageReadError(OSError):
    """An image file that is missing or cannot be decoded (the message names the path)."""


def load_rgb(path: str | Path) -> Image.Image:
    """The image as RGB, turned upright as its EXIF orientation says (phone photos and
    screenshots of them often carry one). Any mode converts (L, P, RGBA, CMYK, 16-bit grey,
    32-bit int and float grey, ...: `data.images.upright_rgb`), and the format is read from the
    bytes, not the name (a JPEG saved as .png loads)."""
    return _decode(path, path)


def load_keyed(path: str | Path) -> tuple[Image.Image, str]:
    """`load_rgb`'s picture and the sha256 of the bytes it is decoded from (`file_digest`'s
    key), from one read of the file: the key and the pixels are of the same bytes even if the
    file changes meanwhile."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read image file: {e}") from None
    return _decode(io.BytesIO(data), path), hashlib.sha256(data).hexdigest()


def _decode(source, path: str | Path) -> Image.Image:
    try:
        with Image.open(source) as image:
            image.load()
            return upright_rgb(image)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot read image: {e}") from None


class ImageFolderDataset(Dataset):
    """`transform(RGB image)` for each path (or RGB image already in memory), for a DataLoader
    (picklable, so workers can run it). With `keys` (each file's sha256 as the cache was
    looked up with it), a file is hashed again from the bytes decoded, and one whose bytes are
    no longer those is an ImageReadError: its features would otherwise be stored under the key
    of what it held before."""

    def __init__(self, paths: Sequence[str | Path | Image.Image],
                 transform: Callable[[Image.Image], torch.Tensor],
                 keys: Sequence[str] | None = None):
        self.paths = list(paths)
        self.transform = transform
        self.keys = None if keys is None else list(keys)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.paths[index]
        if isinstance(item, Image.Image):
            return self.transform(item)
        if self.keys is None:
            return self.transform(load_rgb(item))
        picture, key = load_keyed(item)
        if key != self.keys[index]:
            raise ImageReadError(f"{item}: changed while its features were computed (its bytes "
                                 "are no longer those it was looked up in the feature cache "
                                 "by); run again")
        return self.transform(picture)


def file_digest(path: str | Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read image file: {e}") from None


def pixels_digest(image: Image.Image) -> str:
    """sha256 of an in-memory image's mode, size and pixels: equal pictures encode once."""
    h = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_digest(module: torch.nn.Module) -> bytes:
    """A digest of every parameter and buffer, names and shapes included."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()


def cache_space(modality: str, encoder: torch.nn.Module, preprocessing: str) -> str:
    """`{modality}/{spec}-{h}`: h hashes the spec, the preprocessing and the weights."""
    h = hashlib.sha256()
    for part in (encoder.spec.encode(), preprocessing.encode(), weights_digest(encoder)):
        h.update(len(part).to_bytes(8, "little") + part)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.spec).strip("_")[:48]
    return f"{modality}/{slug}-{h.hexdigest()[:16]}"


@contextlib.contextmanager
def open_store(cache_dir: str | Path | None, modality: str, encoder: torch.nn.Module,
               preprocessing: str) -> Iterator[FeatureStore | None]:
    """The store of `encoder`'s features under `cache_dir` (None or "": no cache, nothing
    written), with the shards of the former folder layout for the same space moved into it."""
    # "" is the CLIs' --cache-dir "" (no cache), not the current folder that Path("") names.
    if not cache_dir:
        yield None
        return
    space = cache_space(modality, encoder, preprocessing)
    with FeatureStore(Path(cache_dir) / FILENAME, space, encoder.dim) as store:
        legacy = Path(cache_dir) / space
        if legacy.is_dir():
            migrate_shards(legacy, store)
        yield store


Batches = Callable[[list[int]], Iterator[tuple[list[int], object]]]


def _check_same_items(encoder: torch.nn.Module, views: list) -> None:
    """Raise on every rank alike when the ranks' views of their items (as `gather` gave them
    to every rank) differ: the same message everywhere, so that it is said once
    (runtime/commands.py, "Errors under torchrun")."""
    differ = [r for r, view in enumerate(views) if view != views[0]]
    if differ:
        ranks = f"{plural('rank', len(differ))} {', '.join(map(str, differ))} of {len(views)}"
        raise raised_on(ValueError(
            f"{encoder.spec} features: {ranks} {'was' if len(differ) == 1 else 'were'} given "
            "other items than rank 0; every rank must pass the same list"), EVERY_RANK)


def _file_list(paths: list[Path]) -> list[tuple[str, int | None]]:
    """What the ranks compare of the image files they were given, in order: each one's path
    below the folder they share (machines may keep the same files in other places) and its size
    (None: unreadable). Each file's bytes are hashed by one rank only (the work is shared
    out), so a file that differs between machines is caught by its size, as one almost always
    is (two pictures encoded to the very same number of bytes are not)."""
    try:
        root = os.path.commonpath([p.parent for p in paths]) if paths else None
    except ValueError:  # absolute and relative paths mixed: compare them as given
        root = None
    listed = []
    for p in paths:
        try:
            size = p.stat().st_size
        except OSError:
            size = None
        listed.append((os.path.relpath(p, root) if root else str(p), size))
    return listed


def _check_same_files(encoder: torch.nn.Module, lists: list[list[tuple[tuple, str]]]) -> None:
    """Raise on every rank alike when the ranks' `_file_list`s differ (every rank's, each entry
    beside its path, from `gather`), naming the first image that differs from rank 0's: the
    same message everywhere, so that it is said once (runtime/commands.py, "Errors under
    torchrun")."""
    compared = [[file for file, _ in files] for files in lists]
    differ = [r for r, files in enumerate(compared) if files != compared[0]]
    if not differ:
        return

    def first_difference(files) -> int:
        return next((i for i, (a, b) in enumerate(zip(files, compared[0])) if a != b),
                    min(len(files), len(compared[0])))

    i, r = min((first_difference(compared[r]), r) for r in differ)

    def has(rank: int) -> str:
        if i >= len(lists[rank]):
            return f"rank {rank} has none (it was given {len(lists[rank])})"
        (_, size), path = lists[rank][i]
        return f"rank {rank} has {path} ({'unreadable' if size is None else f'{size} bytes'})"

    ranks = f"{plural('rank', len(differ))} {', '.join(map(str, differ))} of {len(lists)}"
    raise raised_on(ValueError(
        f"{encoder.spec} features: {ranks} {'was' if len(differ) == 1 else 'were'} given other "
        f"image files than rank 0, the first at image {i + 1}: {has(0)}, {has(r)}; every rank "
        "must be given the same files (on several machines, the same images in their "
        "folder)"), EVERY_RANK)


def _features(encoder: torch.nn.Module, keys: list[str], batches: Batches,
              store: FeatureStore | None, describe: Callable[[int], str], device: str,
              progress: bool, unit: str) -> np.ndarray:
    """Rows for `keys`: from `store` where present, else `encoder(inputs)` for the inputs that
    `batches(indices)` yields, with the first index of each missing key.

    Under torch.distributed every rank passes the same keys: the missing ones are dealt out
    over the ranks, each rank computes and stores its share, and all shares are gathered, so
    that every rank returns what one process would."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    found = store.read(first) if store is not None else {}
    rank, world = rank_world()
    if world > 1:
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
        views = gather(lambda: (digest, [p for p, key in enumerate(first) if key not in found]),
                       f"{encoder.spec} feature lookup")
        _check_same_items(encoder, [d for d, _ in views])
        # A key that any rank did not find is computed (once, by one rank) for all of them.
        missing = sorted(set().union(*(positions for _, positions in views)))
        firsts = list(first.values())
        todo = [firsts[p] for p in missing][rank::world]
    else:
        todo = [i for key, i in first.items() if key not in found]

    def compute() -> dict[str, np.ndarray]:
        computed: dict[str, np.ndarray] = {}
        if not todo:
            return computed
        was_training = encoder.training
        encoder.to(device).eval()
        pending: dict[str, np.ndarray] = {}
        try:
            with torch.inference_mode(), progress_bar(total=len(todo), unit=unit,
                                                      disable=not progress or rank != 0,
                                                      desc=f"{encoder.spec} features") as bar:
                for indices, inputs in batches(todo):
                    out = encoder(inputs).float().cpu().numpy()
                    if out.shape != (len(indices), encoder.dim):
                        raise RuntimeError(f"{encoder.spec}: output {out.shape}, expected "
                                           f"({len(indices)}, {encoder.dim})")
                    for i, row in zip(indices, out):
                        if not np.isfinite(row).all():
                            raise ValueError(f"{encoder.spec}: non-finite features for "
                                             f"{describe(i)}")
                        computed[keys[i]] = pending[keys[i]] = row
                    bar.update(len(indices))
                    if store is not None and len(pending) >= FLUSH_ROWS:
                        store.write(pending)
                        pending = {}
        finally:
            # Keep what was computed even when a later item fails or the run is interrupted.
            if store is not None and pending:
                store.write(pending)
            encoder.train(was_training)
        return computed

    shares = gather(compute, f"{encoder.spec} features") if world > 1 else [compute()]
    for share in shares:
        found.update(share)
    if not keys:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)


# On the CPU, small batches keep a convolution's activations in cache: EfficientNet-Lite0's
# forward pass ran faster at 8 images a batch than at 32 or 64 in each of five runs of
# experiments/bench_speed.py. An accelerator wants large batches.
CPU_IMAGE_BATCH = 8
ACCELERATOR_IMAGE_BATCH = 64
# How load_rgb decodes a file, part of the cache key: features from before it applied the EXIF
# orientation ("exif-upright"), scaled 16-bit grey ("grey16"), scaled 32-bit int and float
# grey ("grey32") or laid transparent pictures over white ("alpha-white") are not reused.
IMAGE_DECODING = "exif-upright grey16 grey32 alpha-white"


def image_features(encoder: "ImageEncoder", paths: Sequence[str | Path | Image.Image],
                   cache_dir: str | Path | None = None, batch_size: int | None = None,
                   num_workers: int = 0, device: str = "cpu", progress: bool = True,
                   channels_last: bool = True, keys: Sequence[str] | None = None) -> np.ndarray:
    """(len(paths), encoder.dim) float32 features; files with identical bytes are encoded once.

    `batch_size` None is CPU_IMAGE_BATCH on the CPU, ACCELERATOR_IMAGE_BATCH elsewhere.
    `channels_last` runs the forward pass in the NHWC memory format, which oneDNN's CPU
    convolutions are written for. With both, this whole path (PNG decoding included) ran
    EfficientNet-Lite0 on 2 cores at 1.2x to 2.0x the images/s of batches of 32 in the default
    format, in four runs (experiments/RESULTS.md, "Speed"). The encoder is returned to the
    default format afterwards, and its weights, hence the cache key, are the same in either
    format. Loader workers (`num_workers`) pay off only where they get cores of their own.

    An item may also be an RGB PIL image already in memory (the Python API, the service), keyed
    by its pixels (`pixels_digest`), or by `keys`: each item's key where the caller has it,
    for a picture the sha256 of the file bytes it was decoded from (as `load_rgb` decodes
    them, so that it shares the features of that file given by its path). Only callers that
    pass a `cache_dir` have them cached (the service passes none: its disk would otherwise grow
    with every picture anyone uploads).
    """
    if batch_size is None:
        on_cpu = torch.device(device).type == "cpu"
        batch_size = CPU_IMAGE_BATCH if on_cpu else ACCELERATOR_IMAGE_BATCH
    paths = [p if isinstance(p, Image.Image) else Path(p) for p in paths]
    in_memory = any(isinstance(p, Image.Image) for p in paths)
    rank, world = rank_world()
    if keys is not None:
        keys = list(keys)
        if len(keys) != len(paths):
            raise ValueError(f"{len(keys)} keys for {len(paths)} images")
    elif world > 1 and not in_memory:  # each rank reads and hashes a share of the files
        files = _file_list(paths)
        digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()
        shares = gather(lambda: (digest, [file_digest(p) for p in paths[rank::world]]),
                        "hashing image files")
        if len({d for d, _ in shares}) > 1:  # the lists themselves, to say where they differ
            _check_same_files(encoder, gather(lambda: list(zip(files, map(str, paths))),
                                              "comparing the ranks' images"))
        keys = [""] * len(paths)
        for r, (_, share) in enumerate(shares):
            keys[r::world] = share
    else:
        keys = [pixels_digest(p) if isinstance(p, Image.Image) else file_digest(p)
                for p in paths]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def batches(todo: list[int]):
        # Each file is decoded from bytes hashed again, checked against the key it was looked
        # up by: its features are stored under that key (`ImageFolderDataset`).
        loader = DataLoader(ImageFolderDataset([paths[i] for i in todo], encoder.transform,
                                               [keys[i] for i in todo]),
                            batch_size=batch_size, num_workers=num_workers)
        for start, pixels in zip(range(0, len(todo), batch_size), loader):
            yield todo[start:start + batch_size], pixels.to(device, memory_format=memory_format)

    with open_store(cache_dir, "image", encoder,
                    f"{IMAGE_DECODING} {encoder.transform!r}") as store:
        encoder.to(memory_format=memory_format)
        try:
            return _features(encoder, keys, batches, store, lambda i: _describe(paths[i], i),
                             device, progress, "image")
        finally:
            encoder.to(memory_format=torch.contiguous_format)


def _describe(item, i: int) -> str:
    return f"in-memory image {i}" if isinstance(item, Image.Image) else str(item)


def _tokenizer_description(encoder: "TextEncoder") -> str:
    tokenizer = encoder.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer
        return f"{tokenizer!r} max_length={encoder.max_length}"
    # The serialised tokenizer covers vocabulary, normalisation and special tokens. Its padding
    # and truncation state is left over from the last call, not a property of the tokenizer.
    state = json.loads(backend.to_str())
    state.pop("padding", None)
    state.pop("truncation", None)
    body = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    return f"{type(tokenizer).__name__} max_length={encoder.max_length} {body}"


def text_features(encoder: "TextEncoder", texts: Sequence[str], cache_dir: str | Path | None = None,
                  batch_size: int = 64, device: str = "cpu", progress: bool = True) -> np.ndarray:
    """(len(texts), encoder.dim) float32 features; identical captions are encoded once.

    Joined encoders (`minilm+mpnet`) are cached part by part, so that each part's features
    are shared with runs that use it alone."""
    from ..models.encoders import ConcatTextEncoder

    texts = list(texts)
    if isinstance(encoder, ConcatTextEncoder):
        parts = [text_features(part, texts, cache_dir, batch_size, device, progress)
                 for part in encoder.parts]
        # As ConcatTextEncoder.forward: each part L2-normalised (F.normalize's eps).
        return np.hstack([p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
                          for p in parts]).astype(np.float32)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"caption {i} is a {type(text).__name__}, not a str: {text!r}")
    keys = [text_digest(t) for t in texts]

    def batches(todo: list[int]):
        # Batching captions of similar length wastes less compute on padding.
        todo = sorted(todo, key=lambda i: len(texts[i]))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = encoder.tokenize([texts[i] for i in chunk])
            yield chunk, {k: v.to(device) for k, v in batch.items()}

    with open_store(cache_dir, "text", encoder, _tokenizer_description(encoder)) as store:
        return _features(encoder, keys, batches, store,
                         lambda i: f"caption {i} {texts[i][:60]!r}", device, progress, "caption")
