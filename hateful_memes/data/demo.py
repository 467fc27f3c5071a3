"""A small SYNTHETIC hateful-memes data set, generated offline in the real file format.

The real meme images are not on this machine and cannot be downloaded, so this module makes
stand-ins: `OUT_DIR/annotations/{train,dev}.json` (labelled, one JSON object a line, the
organisers' fields), `OUT_DIR/annotations/test.jsonl` (id, img, text only) and
`OUT_DIR/img/NNNNN.png`, each a picture with its caption drawn on it in meme style. It exists
for two jobs: the embedded default of the main job (`make demo`) and the tests of the image
path. Nothing measured on it says anything about skill on real hateful memes; it only shows
that the pipeline runs end to end and that a fused model can use both modalities.

How the labels are hidden in the memes. Every meme may carry a *target* cue (a protected
category) and an *attack* cue (an attack type); each cue sits in exactly one modality:

- a target in the picture is a big saturated emblem, one colour and shape per category; in
  the caption it is a group noun ("foreigners", "wheelchair users", ...);
- an attack in the picture is a bold two-colour texture filling the background, one per
  attack type; in the caption it is the wording ("... make me sick", "keep ... out").

A meme is hateful exactly when it has a target AND an attack; its gold labels are then those
categories and attack types. Benign memes carry a target with a friendly or neutral caption,
an attack-sounding caption or texture with no target, or neither. So a caption like "these
guys make me sick" is hateful over a category emblem and benign over a plain scene: some
labels can be read only from the picture, some only from the caption, and most need both.
The caption words are deliberately schematic and the slurs are invented words.

Everything is drawn from one seed: the same seed gives byte-identical annotation files and
identical pixels; `python -m hateful_memes.data.demo OUT_DIR [--n N] [--seed S]`.
"""
from __future__ import annotations

import argparse
import colorsys
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..labels import ATTACK, EMPTY, HATE, PC
from ..runtime.files import atomic_open, write_json, write_jsonl

SPLITS: tuple[str, ...] = ("train", "dev", "test")
# Fractions of dev and test; train takes the rest (about 70/15/15 like the brief asks).
_HELD_OUT = 0.15
MIN_N = 20  # below this a split or a label would go missing from train
MAX_N = 99_999  # ids are distinct 5-digit numbers, as in the real file names

# How often each kind of meme occurs. The real train set is about 35 % hateful; half here
# gives each of the 7 attack types enough positives to learn from in a 600-meme demo.
_P_HATEFUL = 0.5
_P_SECOND_PC = 0.12
_P_SECOND_ATTACK = 0.10
_P_DISTRACTOR = 0.35  # a dull emblem on a picture without a target, so shape alone is no cue

# Cue tables keyed by label name; _check_tables() below holds them to labels.py so that a
# label added or renamed there fails at import instead of silently never being generated.
_TARGET_NOUNS: dict[str, tuple[str, ...]] = {
    "disability": ("wheelchair users", "disabled people", "the blind", "people on crutches"),
    "nationality": ("foreigners", "immigrants", "people from abroad", "tourists from overseas"),
    "race": ("other races", "people with darker skin", "that ethnic group", "mixed race people"),
    "religion": ("churchgoers", "religious people", "temple goers", "the faithful"),
    "sex": ("women", "girls", "ladies", "females"),
}
# (shape, RGB): saturated colours far from the muted scenes and from the attack textures.
_TARGET_EMBLEMS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "disability": ("circle", (30, 80, 230)),
    "nationality": ("square", (225, 35, 35)),
    "race": ("triangle", (245, 205, 20)),
    "religion": ("star", (150, 45, 195)),
    "sex": ("plus", (35, 175, 60)),
}
_ATTACK_PHRASES: dict[str, tuple[str, ...]] = {
    "contempt": ("{s} make me sick", "nobody can stand {s}", "{s} are disgusting",
                 "i despise {s}"),
    "dehumanizing": ("{s} are animals", "{s} are not even human", "{s} breed like rats",
                     "{s} are a plague"),
    "exclusion": ("{s} should stay out", "keep {s} out of here", "{s} do not belong here",
                  "ban {s} from everywhere"),
    "inciting_violence": ("someone should hurt {s}", "lets go beat up {s}",
                          "{s} deserve a beating", "time to fight {s}"),
    "inferiority": ("{s} are dumber than us", "{s} will never be as good as us",
                    "{s} are second class", "{s} are worth less than us"),
    "mocking": ("lol look at {s} trying", "{s} be like duh", "imagine being one of {s} haha",
                "{s} trying to think lmao"),
    # Invented words: the data needs a slur-like token, not a real slur.
    "slurs": ("{s} are filthy zorks", "{s}, those blorgs", "go away {s} you snerks",
              "{s} are just grubniks"),
}
# (texture, colour A, colour B) filling the whole background.
_ATTACK_TEXTURES: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int]]] = {
    "contempt": ("hstripes", (255, 140, 0), (35, 30, 30)),
    "dehumanizing": ("dots", (255, 105, 180), (70, 0, 70)),
    "exclusion": ("vbars", (0, 205, 205), (0, 40, 85)),
    "inciting_violence": ("diagonal", (235, 235, 235), (175, 0, 0)),
    "inferiority": ("checker", (125, 80, 40), (240, 220, 175)),
    "mocking": ("zigzag", (165, 255, 0), (0, 95, 0)),
    "slurs": ("rings", (250, 250, 250), (0, 0, 150)),
}
# Subjects that name no protected group: "these guys" needs the picture to say who is meant.
_PRONOUNS = ("these guys", "those people", "this lot", "those ones")
_HARMLESS_TARGETS = ("mosquitoes", "mondays", "spiders", "traffic jams", "pigeons",
                     "alarm clocks")
_FRIENDLY = ("{s} are awesome", "love {s}", "{s} make the best neighbours", "shout out to {s}",
             "{s} are the best", "be kind to {s}")
_STATEMENTS = ("{s} at the beach", "this is what {s} look like", "a day out with {s}",
               "{s} on a monday", "me and {s} at the party", "{s} when the bus is late")
_NEUTRAL = ("when the coffee kicks in", "monday mood", "me waiting for the weekend",
            "that feeling when the wifi works", "when you finally finish the project",
            "weekend plans", "my face when the pizza arrives", "nobody: absolutely nobody:")
_PREFIXES = ("honestly", "tbh", "i mean", "ok but", "so yeah", "fun fact:")
_SUFFIXES = ("just saying", "facts", "lol", "#relatable", "no cap", "change my mind")
_SHAPES = ("circle", "square", "triangle", "star", "plus")


def _check_tables() -> None:
    for task_labels, table, name in ((PC, _TARGET_NOUNS, "_TARGET_NOUNS"),
                                     (PC, _TARGET_EMBLEMS, "_TARGET_EMBLEMS"),
                                     (ATTACK, _ATTACK_PHRASES, "_ATTACK_PHRASES"),
                                     (ATTACK, _ATTACK_TEXTURES, "_ATTACK_TEXTURES")):
        if set(table) != set(task_labels[1:]):
            raise AssertionError(f"{name} keys {sorted(table)} != labels {list(task_labels[1:])}")
    if {shape for shape, _ in _TARGET_EMBLEMS.values()} - set(_SHAPES):
        raise AssertionError("_TARGET_EMBLEMS uses a shape that _emblem() cannot draw")


_check_tables()


@dataclass(frozen=True)
class SyntheticMeme:
    """One generated meme: its annotation and what its picture shows."""

    id: int
    split: str
    text: str
    hate: tuple[str, ...]
    pc: tuple[str, ...]
    attack: tuple[str, ...]
    image_targets: tuple[str, ...]  # categories drawn as emblems (at most one)
    image_attacks: tuple[str, ...]  # attack types drawn as the background texture (at most one)
    seed: int  # the picture and caption layout are a pure function of this

    @property
    def img(self) -> str:
        return f"img/{self.id:05d}.png"

    def row(self) -> dict:
        """The annotation line in the organisers' field order (test rows: id, img, text)."""
        if self.split == "test":
            return {"id": self.id, "img": self.img, "text": self.text}
        hateful = self.hate != (EMPTY["hate"],)
        # The raw per-annotator fields as the real train file has them: "None" when benign.
        raw_pc = [list(self.pc)] * 3 if hateful else "None"
        raw_attack = [list(self.attack)] * 3 if hateful else "None"
        return {"id": self.id, "set_name": self.split, "img": self.img, "text": self.text,
                "gold_hate": list(self.hate), "gold_pc": list(self.pc),
                "gold_attack": list(self.attack), "pc": raw_pc, "attack": raw_attack}


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _others(rng: np.random.Generator, labels: Sequence[str], exclude: str) -> str:
    return _pick(rng, [label for label in labels if label != exclude])


def _caption(rng: np.random.Generator, text_targets: Sequence[str],
             text_attacks: Sequence[str], mode: str) -> str:
    """A caption naming `text_targets` and worded as `text_attacks`.

    `mode` says what the caption does when it names no attack: "friendly" or "statement"
    (a neutral remark about the subject); with no subject either it is a neutral meme line.
    `mode == "harmless"` gives an attack aimed at a non-protected thing.
    """
    nouns = [_pick(rng, _TARGET_NOUNS[t]) for t in text_targets]
    if nouns:
        subject = " and ".join(nouns)
    elif mode == "harmless":
        subject = _pick(rng, _HARMLESS_TARGETS)
    else:
        subject = _pick(rng, _PRONOUNS)
    if text_attacks:
        clauses = [_pick(rng, _ATTACK_PHRASES[a]).format(s=subject if i == 0 else "they")
                   for i, a in enumerate(text_attacks)]
        body = " and ".join(clauses)
    elif nouns or mode in ("friendly", "statement"):
        body = _pick(rng, _FRIENDLY if mode == "friendly" else _STATEMENTS).format(s=subject)
    else:
        body = _pick(rng, _NEUTRAL)
    if rng.random() < 0.3:
        body = f"{_pick(rng, _PREFIXES)} {body}"
    if rng.random() < 0.3:
        body = f"{body} {_pick(rng, _SUFFIXES)}"
    return body


def _modality(rng: np.random.Generator) -> str:
    return "image" if rng.random() < 0.5 else "text"


def _hateful(rng: np.random.Generator, pc: str, attack: str) -> dict:
    """A hateful meme's cues: each label in one modality, a second label in the other one."""
    targets = {"image": [], "text": []}
    attacks = {"image": [], "text": []}
    where = _modality(rng)
    targets[where].append(pc)
    if rng.random() < _P_SECOND_PC:
        targets["text" if where == "image" else "image"].append(_others(rng, PC[1:], pc))
    where = _modality(rng)
    attacks[where].append(attack)
    if rng.random() < _P_SECOND_ATTACK:
        attacks["text" if where == "image" else "image"].append(_others(rng, ATTACK[1:], attack))
    mode = "statement" if rng.random() < 0.7 or not targets["text"] else "friendly"
    if not targets["text"] and not attacks["text"] and rng.random() < 0.5:
        mode = "neutral"
    return {"targets": targets, "attacks": attacks, "mode": mode,
            "pc": tuple(t for t in PC if t in targets["image"] + targets["text"]),
            "attack": tuple(a for a in ATTACK if a in attacks["image"] + attacks["text"])}


def _benign(rng: np.random.Generator) -> dict:
    """A benign meme: a target with no attack, an attack with no target, or neither."""
    targets = {"image": [], "text": []}
    attacks = {"image": [], "text": []}
    kind = rng.random()
    if kind < 0.35:
        targets[_modality(rng)].append(_pick(rng, PC[1:]))
        mode = "friendly" if rng.random() < 0.5 else "statement"
    elif kind < 0.65:
        attacks[_modality(rng)].append(_pick(rng, ATTACK[1:]))
        mode = "harmless" if attacks["text"] and rng.random() < 0.4 else "statement"
    else:
        mode = _pick(rng, ("neutral", "neutral", "friendly", "statement"))
    return {"targets": targets, "attacks": attacks, "mode": mode,
            "pc": (EMPTY["pc"],), "attack": (EMPTY["attack"],)}


def _split_sizes(n: int) -> dict[str, int]:
    held = max(3, round(n * _HELD_OUT))
    return {"train": n - 2 * held, "dev": held, "test": held}


def make_memes(n: int = 600, seed: int = 0) -> list[SyntheticMeme]:
    """`n` synthetic memes (train, then dev, then test), a pure function of `n` and `seed`.

    Hateful memes cycle through the real labels of both tasks and the first
    max(len(PC), len(ATTACK)) - 1 of them go to train, so every real label has a positive
    train example whenever n >= MIN_N.
    """
    if not MIN_N <= n <= MAX_N:
        raise ValueError(f"n must be between {MIN_N} and {MAX_N}, got {n}")
    rng = np.random.default_rng(seed)
    sizes = _split_sizes(n)
    n_cover = max(len(PC), len(ATTACK)) - 1
    n_hateful = max(n_cover, round(n * _P_HATEFUL))
    # Shuffled cycles balance the labels; the differing lengths mix pc/attack pairs.
    pc_cycle = [PC[1:][i] for i in rng.permutation(len(PC) - 1)]
    attack_cycle = [ATTACK[1:][i] for i in rng.permutation(len(ATTACK) - 1)]
    plans = [_hateful(rng, pc_cycle[i % len(pc_cycle)], attack_cycle[i % len(attack_cycle)])
             for i in range(n_hateful)]
    plans += [_benign(rng) for _ in range(n - n_hateful)]
    rest = [n_cover + int(i) for i in rng.permutation(n - n_cover)]
    n_fill = sizes["train"] - n_cover
    train = list(range(n_cover)) + rest[:n_fill]
    order = [train[int(i)] for i in rng.permutation(len(train))] + rest[n_fill:]
    ids = rng.choice(MAX_N, size=n, replace=False) + 1
    seeds = rng.integers(2**31, size=n)
    split_of = [s for s in SPLITS for _ in range(sizes[s])]
    memes = []
    for k, i in enumerate(order):
        plan = plans[i]
        hateful = plan["pc"] != (EMPTY["pc"],)
        text = _caption(rng, plan["targets"]["text"], plan["attacks"]["text"], plan["mode"])
        memes.append(SyntheticMeme(
            id=int(ids[k]), split=split_of[k], text=text,
            hate=(HATE[1],) if hateful else (HATE[0],), pc=plan["pc"], attack=plan["attack"],
            image_targets=tuple(plan["targets"]["image"]),
            image_attacks=tuple(plan["attacks"]["image"]), seed=int(seeds[k])))
    return memes


# ---------------------------------------------------------------- pictures


def _jitter(rng: np.random.Generator, rgb: Sequence[int], amount: int = 18) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    """A dull colour, far from the saturated cue colours."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.25), rng.uniform(0.45, 0.85))
    return int(r * 255), int(g * 255), int(b * 255)


def _scene(rng: np.random.Generator, size: int) -> Image.Image:
    """A plain landscape: a sky and a ground band with a few soft blobs."""
    sky, ground = np.array(_muted(rng), float), np.array(_muted(rng), float)
    horizon = int(size * rng.uniform(0.45, 0.7))
    y = np.arange(size, dtype=float)[:, None]
    shade = np.where(y < horizon, 1.15 - 0.3 * y / size, 0.8 + 0.2 * y / size)
    colour = np.where((y < horizon)[..., None], sky, ground) * shade[..., None]
    pixels = np.broadcast_to(colour, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = size * rng.uniform(0.08, 0.25), size * rng.uniform(0.04, 0.12)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_muted(rng))
    return image


def _texture(rng: np.random.Generator, size: int, attack: str) -> Image.Image:
    kind, a, b = _ATTACK_TEXTURES[attack]
    period = size * rng.uniform(0.09, 0.16)
    phase = rng.uniform(0, period)
    y, x = np.mgrid[0:size, 0:size].astype(float)
    if kind == "hstripes":
        mask = ((y + phase) // (period / 2)) % 2 == 0
    elif kind == "vbars":
        mask = ((x + phase) % period) < period * 0.35
    elif kind == "diagonal":
        mask = ((x + y + phase) // (period / 2)) % 2 == 0
    elif kind == "checker":
        mask = ((x + phase) // period + (y + phase) // period) % 2 == 0
    elif kind == "dots":
        dx, dy = (x + phase) % period - period / 2, (y + phase) % period - period / 2
        mask = dx * dx + dy * dy < (period * 0.32) ** 2
    elif kind == "zigzag":
        wave = np.abs(((x / period) % 1.0) - 0.5) * period
        mask = ((y + wave + phase) // (period / 2)) % 2 == 0
    elif kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        mask = (np.hypot(x - cx, y - cy) // (period / 2)) % 2 == 0
    else:
        raise AssertionError(f"unknown texture {kind!r}")
    pixels = np.where(mask[..., None], _jitter(rng, a), _jitter(rng, b))
    return Image.fromarray(pixels.astype(np.uint8))


def _emblem(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
            fill: tuple[int, ...], outline: tuple[int, ...]) -> None:
    width = max(2, round(r / 20))
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill, outline=outline, width=width)
    elif shape == "triangle":
        points = [(cx + r * math.sin(t), cy - r * math.cos(t))
                  for t in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
        draw.polygon(points, fill=fill, outline=outline, width=width)
    elif shape == "star":
        points = [(cx + rr * math.sin(k * math.pi / 5), cy - rr * math.cos(k * math.pi / 5))
                  for k, rr in ((k, r if k % 2 == 0 else r * 0.45) for k in range(10))]
        draw.polygon(points, fill=fill, outline=outline, width=width)
    elif shape == "plus":
        w = r * 0.38
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        raise AssertionError(f"unknown shape {shape!r}")


def picture(meme: SyntheticMeme, size: int = 256) -> Image.Image:
    """The meme's picture without its caption: background, then an emblem if any."""
    rng = np.random.default_rng([meme.seed, 0])
    if meme.image_attacks:
        image = _texture(rng, size, meme.image_attacks[0])
    else:
        image = _scene(rng, size)
    if meme.image_targets:
        shape, colour = _TARGET_EMBLEMS[meme.image_targets[0]]
        fill = _jitter(rng, colour, 25)
    elif rng.random() < _P_DISTRACTOR:
        shape, fill = _pick(rng, _SHAPES), _muted(rng)
    else:
        return image
    r = size * rng.uniform(0.2, 0.3)
    cx, cy = size * (0.5 + rng.uniform(-0.12, 0.12, 2))
    _emblem(ImageDraw.Draw(image), shape, cx, cy, r, fill, _jitter(rng, (20, 20, 20), 15))
    return image


def _wrap(draw: ImageDraw.ImageDraw, words: list[str], font, width: float) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


# How the caption is drawn, one style a meme, drawn from its seed. Real memes mix these, and an
# OCR engine measured on one style only would look better than it is (experiments/bench_ocr.py).
# - classic: Pillow's built-in sans, white capitals, dark outline, split top and bottom;
# - impact: the meme look with a heavy bold sans (Impact itself is not free: DejaVu Sans Bold,
#   which matplotlib bundles, stands in), thick black outline, top and bottom;
# - stacked: the same font, the whole caption in one block of two or three lines;
# - busy: lower case, a thin outline, over a band of confetti that crowds the letters.
CAPTION_STYLES: tuple[str, ...] = ("classic", "impact", "stacked", "busy")
# Each text block stays inside this fraction of the height from its edge, so the middle of the
# picture (where the emblem cue sits) is never covered.
_BLOCK_HEIGHT = 0.4


@lru_cache(maxsize=None)
def _bold_font_path() -> str:
    # Found without importing matplotlib (slow to import, and only its data file is needed).
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("matplotlib is not installed: its DejaVu Sans Bold font draws the "
                           "demo captions (pip install matplotlib)")
    path = (Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"
            / "DejaVuSans-Bold.ttf")
    if not path.is_file():
        raise RuntimeError(f"{path}: missing; the demo captions need matplotlib's DejaVu Sans Bold")
    return str(path)


@lru_cache(maxsize=64)
def _font(style: str, size: int):
    if style == "classic":
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(_bold_font_path(), size=size)


def caption_style(seed: int) -> str:
    """The style `draw_caption` uses for a meme of this seed (one of CAPTION_STYLES)."""
    return _pick(np.random.default_rng([seed, 1]), CAPTION_STYLES)


def _layout(draw: ImageDraw.ImageDraw, words: list[str], style: str, size: int,
            rng: np.random.Generator) -> tuple[object, dict[str, list[str]]]:
    """The font and the lines of each edge's block; the font shrinks until every block fits."""
    if style == "stacked":
        blocks = {_pick(rng, ("top", "bottom")): words}
    elif len(words) >= 4:
        cut = len(words) // 2 + int(rng.integers(-1, 2))
        blocks = {"top": words[:cut], "bottom": words[cut:]}
    else:
        blocks = {_pick(rng, ("top", "bottom")): words}
    scale = {"classic": (0.075, 0.095), "impact": (0.085, 0.11), "stacked": (0.085, 0.11),
             "busy": (0.07, 0.09)}[style]
    font_size = max(8, round(size * rng.uniform(*scale)))
    # A stacked caption is wrapped narrow enough for two lines (three when long), as memes
    # with one long caption have it.
    n_lines = 2 if len(words) < 7 else 3
    while True:
        font = _font(style, font_size)
        width = size * 0.92
        if style == "stacked":
            # The narrowest width (in steps of 5 %) that wraps into n_lines lines.
            length = draw.textlength(" ".join(words), font=font)
            width = min(width, length / n_lines)
            while len(_wrap(draw, words, font, width)) > n_lines and width < size * 0.92:
                width = min(size * 0.92, width * 1.05)
        lines = {edge: _wrap(draw, block, font, width) for edge, block in blocks.items()}
        tallest = max(len(block) for block in lines.values())
        fits = tallest * font_size * 1.15 <= size * _BLOCK_HEIGHT
        if (fits and (style != "stacked" or tallest <= 3)) or font_size <= 8:
            return font, lines
        font_size -= 1


def _confetti(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, y0: float,
              y1: float) -> None:
    """Short bright strokes between rows y0 and y1: clutter for the letters to stand on."""
    for _ in range(int(rng.integers(40, 70))):
        x, y = rng.uniform(0, size), rng.uniform(y0, y1)
        dx, dy = rng.uniform(-size * 0.06, size * 0.06, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        end = (x + dx, float(np.clip(y + dy, y0, y1)))
        draw.line((x, y, *end), fill=colour, width=int(rng.integers(1, 4)))


def draw_caption(image: Image.Image, text: str, seed: int) -> Image.Image:
    """The caption drawn on a copy of `image` as memes have it, in the style `caption_style`
    gives for `seed`: white letters with a dark outline near the top and/or bottom edge, never
    over the middle of the picture."""
    image = image.copy()
    size = image.width
    rng = np.random.default_rng([seed, 1])
    style = _pick(rng, CAPTION_STYLES)
    draw = ImageDraw.Draw(image)
    words = (text.lower() if style == "busy" else text.upper()).split()
    font, blocks = _layout(draw, words, style, size, rng)
    stroke = {"classic": max(1, round(font.size / 12)), "impact": max(2, round(font.size / 10)),
              "stacked": max(2, round(font.size / 10)), "busy": 1}[style]
    line_height = font.size * 1.15
    margin = size * 0.03
    for edge, lines in blocks.items():
        y = margin if edge == "top" else size - margin - line_height * len(lines)
        if style == "busy":
            _confetti(draw, rng, size, max(0.0, y - margin / 2),
                      min(size - 1.0, y + line_height * len(lines)))
        for line in lines:
            x = (size - draw.textlength(line, font=font)) / 2 + rng.uniform(-3, 3)
            draw.text((x, y), line, font=font, fill=(255, 255, 255), stroke_width=stroke,
                      stroke_fill=_jitter(rng, (15, 15, 15), 15))
            y += line_height
    return image


def render(meme: SyntheticMeme, size: int = 256) -> Image.Image:
    """The meme as an RGB image of `size` x `size` pixels."""
    return draw_caption(picture(meme, size), meme.text, meme.seed)


# ---------------------------------------------------------------- files


# Written first into every generated folder: a folder holding it may be generated into again;
# any other folder that is not empty is refused, since its files (real annotations, real
# images named like demo ids) would be overwritten.
MARKER = "SYNTHETIC_DEMO.json"


def check_out_dir(out_dir: str | Path) -> None:
    """Raise ValueError unless `out_dir` is missing, empty, or an earlier demo output."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: is a file, not a folder")
    if out_dir.is_dir() and not (out_dir / MARKER).is_file():
        entries = sorted(p.name for p in out_dir.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            raise ValueError(
                f"{out_dir}: is not empty ({shown}) and is no earlier demo output (it has no "
                f"{MARKER}); the demo would overwrite files there: choose a new or empty folder")


def generate(out_dir: str | Path, n: int = 600, seed: int = 0,
             image_size: int = 256) -> dict[str, Path]:
    """Write the data set under `out_dir`; returns the paths of "train", "dev", "test"
    (annotation files) and "img" (the image folder). `out_dir` must be missing, empty, or
    an earlier output of this function (`check_out_dir`)."""
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    memes = make_memes(n, seed)
    write_json(out_dir / MARKER, {"generator": "hateful_memes.data.demo", "synthetic": True,
                                  "n": n, "seed": seed, "image_size": image_size})
    paths = {**annotation_paths(out_dir), "img": out_dir / "img"}
    for meme in memes:
        with atomic_open(out_dir / meme.img, "wb") as f:
            render(meme, image_size).save(f, format="PNG")
    for split in SPLITS:
        write_jsonl(paths[split], (m.row() for m in memes if m.split == split))
    return paths


def annotation_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Where `generate` writes each split's annotation file ("train", "dev", "test")."""
    ann = Path(out_dir) / "annotations"
    return {"train": ann / "train.json", "dev": ann / "dev.json", "test": ann / "test.jsonl"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hateful_memes.data.demo",
        description="Write a small synthetic hateful-memes data set (annotations and images) "
                    "in the real file format. Synthetic: for demos and tests, not a benchmark.")
    parser.add_argument("out_dir", type=Path, help="folder to write annotations/ and img/ into")
    parser.add_argument("--n", type=int, default=600, help=f"number of memes ({MIN_N}..{MAX_N})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--image-size", type=int, default=256, help="image side in pixels")
    args = parser.parse_args(argv)
    try:
        paths = generate(args.out_dir, n=args.n, seed=args.seed, image_size=args.image_size)
    except ValueError as e:
        parser.error(str(e))
    counts = {split: len(paths[split].read_text(encoding="utf-8").splitlines()) for split in SPLITS}
    print(json.dumps({"out_dir": str(args.out_dir), **counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
