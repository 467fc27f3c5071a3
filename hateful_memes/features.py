"""Frozen encoder features: computed once per distinct input, cached on disk.

Cache layout: CACHE/{image,text}/{spec}-{h}/*.npz where h hashes the encoder spec, its
preprocessing (the transform, or the tokenizer and its max length) and its weights, so that a
re-trained checkpoint at the same path, or a changed transform, never reads stale features.
Each shard holds `keys` (sha256 of an image file's bytes or of a caption) and `vectors`, one row
per key. A call reads every shard of its directory, computes only the keys still missing and
appends them as new shards; there is no index to keep in sync. Shards are written atomically
(temp + rename) every SHARD_ROWS rows, so a killed run keeps what it flushed and never leaves
half a file; a shard that cannot be read is reported, removed, and its items recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .files import atomic_open

if TYPE_CHECKING:
    from .encoders import ImageEncoder, TextEncoder

SHARD_ROWS = 2048


class ImageReadError(OSError):
    """An image file that is missing or cannot be decoded (the message names the path)."""


def load_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot read image: {e}") from None


class ImageFolderDataset(Dataset):
    """`transform(RGB image)` for each path (or RGB image already in memory), for a DataLoader
    (picklable, so workers can run it)."""

    def __init__(self, paths: Sequence[str | Path | Image.Image],
                 transform: Callable[[Image.Image], torch.Tensor]):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.paths[index]
        return self.transform(item if isinstance(item, Image.Image) else load_rgb(item))


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


class FeatureStore:
    """The shards of one (encoder, preprocessing, weights) combination."""

    def __init__(self, directory: Path, dim: int):
        self.directory = directory
        self.dim = dim

    @classmethod
    def for_encoder(cls, cache_dir: str | Path, modality: str, encoder: torch.nn.Module,
                    preprocessing: str) -> "FeatureStore":
        h = hashlib.sha256()
        for part in (encoder.spec.encode(), preprocessing.encode(), weights_digest(encoder)):
            h.update(len(part).to_bytes(8, "little") + part)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.spec).strip("_")[:48]
        return cls(Path(cache_dir) / modality / f"{slug}-{h.hexdigest()[:16]}", encoder.dim)

    def read(self, wanted: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for shard in sorted(self.directory.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, vectors = z["keys"], z["vectors"]
                if vectors.dtype != np.float32 or vectors.shape != (len(keys), self.dim):
                    raise ValueError(f"vectors {vectors.dtype} {vectors.shape}, expected float32 "
                                     f"({len(keys)}, {self.dim})")
                if not np.isfinite(vectors).all():
                    raise ValueError("non-finite values")
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                warnings.warn(f"feature cache: {shard} is unreadable ({e}); removing it, "
                              "its items will be recomputed", stacklevel=3)
                shard.unlink(missing_ok=True)
                continue
            for key, row in zip(keys.tolist(), vectors):
                if key in wanted:
                    found[key] = row
        return found

    def write(self, rows: dict[str, np.ndarray]) -> None:
        # Unique per writer, so concurrent runs never replace each other's shards.
        name = f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(4)}.npz"
        with atomic_open(self.directory / name, "wb") as f:
            np.savez(f, keys=np.array(list(rows), dtype="U64"),
                     vectors=np.stack(list(rows.values())).astype(np.float32))


Batches = Callable[[list[int]], Iterator[tuple[list[int], object]]]


def _features(encoder: torch.nn.Module, keys: list[str], batches: Batches,
              store: FeatureStore | None, describe: Callable[[int], str], device: str,
              progress: bool, unit: str) -> np.ndarray:
    """Rows for `keys`: from `store` where present, else `encoder(inputs)` for the inputs that
    `batches(indices)` yields, with the first index of each missing key."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    found = store.read(set(first)) if store is not None else {}
    todo = [i for key, i in first.items() if key not in found]
    if todo:
        was_training = encoder.training
        encoder.to(device).eval()
        pending: dict[str, np.ndarray] = {}
        try:
            with torch.inference_mode(), tqdm(total=len(todo), unit=unit, disable=not progress,
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
                        found[keys[i]] = pending[keys[i]] = row
                    bar.update(len(indices))
                    if store is not None and len(pending) >= SHARD_ROWS:
                        store.write(pending)
                        pending = {}
        finally:
            # Keep what was computed even when a later item fails or the run is interrupted.
            if store is not None and pending:
                store.write(pending)
            encoder.train(was_training)
    if not keys:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)


# On the CPU, small batches keep a convolution's activations in cache: EfficientNet-Lite0's
# forward pass ran faster at 8 images a batch than at 32 or 64 in each of five runs of
# experiments/bench_speed.py. An accelerator wants large batches.
CPU_IMAGE_BATCH = 8
ACCELERATOR_IMAGE_BATCH = 64


def image_features(encoder: "ImageEncoder", paths: Sequence[str | Path | Image.Image],
                   cache_dir: str | Path | None = None, batch_size: int | None = None,
                   num_workers: int = 0, device: str = "cpu", progress: bool = True,
                   channels_last: bool = True) -> np.ndarray:
    """(len(paths), encoder.dim) float32 features; files with identical bytes are encoded once.

    `batch_size` None is CPU_IMAGE_BATCH on the CPU, ACCELERATOR_IMAGE_BATCH elsewhere.
    `channels_last` runs the forward pass in the NHWC memory format, which oneDNN's CPU
    convolutions are written for. With both, this whole path (PNG decoding included) ran
    EfficientNet-Lite0 on 2 cores at 1.2x to 2.0x the images/s of batches of 32 in the default
    format, in four runs (experiments/RESULTS.md, "Speed"). The encoder is returned to the
    default format afterwards, and its weights, hence the cache key, are the same in either
    format. Loader workers (`num_workers`) pay off only where they get cores of their own.

    An item may also be an RGB PIL image already in memory (the Python API, the service). Those
    are keyed by their pixels and never cached on disk: a service would otherwise grow its disk
    with every picture anyone uploads, and an uploaded meme is rarely seen twice.
    """
    if batch_size is None:
        on_cpu = torch.device(device).type == "cpu"
        batch_size = CPU_IMAGE_BATCH if on_cpu else ACCELERATOR_IMAGE_BATCH
    paths = [p if isinstance(p, Image.Image) else Path(p) for p in paths]
    in_memory = any(isinstance(p, Image.Image) for p in paths)
    keys = [pixels_digest(p) if isinstance(p, Image.Image) else file_digest(p) for p in paths]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def batches(todo: list[int]):
        loader = DataLoader(ImageFolderDataset([paths[i] for i in todo], encoder.transform),
                            batch_size=batch_size, num_workers=num_workers)
        for start, pixels in zip(range(0, len(todo), batch_size), loader):
            yield todo[start:start + batch_size], pixels.to(device, memory_format=memory_format)

    store = (FeatureStore.for_encoder(cache_dir, "image", encoder, repr(encoder.transform))
             if cache_dir is not None and not in_memory else None)
    encoder.to(memory_format=memory_format)
    try:
        return _features(encoder, keys, batches, store, lambda i: _describe(paths[i], i), device,
                         progress, "img")
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
    """(len(texts), encoder.dim) float32 features; identical captions are encoded once."""
    texts = list(texts)
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

    store = (FeatureStore.for_encoder(cache_dir, "text", encoder, _tokenizer_description(encoder))
             if cache_dir is not None else None)
    return _features(encoder, keys, batches, store, lambda i: f"caption {i} {texts[i][:60]!r}",
                     device, progress, "caption")
