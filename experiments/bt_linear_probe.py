"""Benchmark: do Barlow Twins features beat random weights? A linear probe on real images.

scikit-learn's digits (1,797 real 8x8 scans of handwritten digits, shipped with the
package) upsampled to 32 px and made RGB. The training split is written out as PNG files
and pretrained on, without labels, through the project's own CLI (pretrain.py); then a
logistic regression on standardised frozen features is fitted on the training split and
scored on the held-out split, for

- the backbone with the random weights that pretraining started from (same seed), and
  the same without timm's zero-initialised residual branches (a stronger baseline),
- the backbone after Barlow Twins,
- and, for scale, the raw 8x8 pixels.

    .venv/bin/python experiments/bt_linear_probe.py

Also probes with 10 labels per class (mean of 5 draws): what self-supervised features are
for. Takes under 10 minutes on 2 CPU cores with the defaults.
"""
from __future__ import annotations

import os

# Idle OpenMP threads spin by default: on a shared 2-core machine a second thread then
# makes every small operation many times slower. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from torch import nn  # noqa: E402

# This checkout's package, not another one installed in the environment (as the other scripts).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hateful_memes.cli import pretrain  # noqa: E402
from hateful_memes.pretraining.barlow_twins import BarlowTwins, load_backbone  # noqa: E402


def digit_images(size: int) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)
    images = [Image.fromarray(p, "L").resize((size, size), Image.BICUBIC).convert("RGB")
              for p in pixels]
    return images, digits.target, digits.data


@torch.no_grad()
def features(backbone: nn.Module, images: list[Image.Image], mean, std) -> np.ndarray:
    backbone.eval()
    x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images]))
    x = x.permute(0, 3, 1, 2)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return torch.cat([backbone(b) for b in x.split(256)]).numpy()


def probe(train_x, train_y, test_x, test_y, per_class: int | None = None, draws: int = 5) -> float:
    """Test accuracy of a logistic regression on standardised features; with `per_class`,
    the mean over `draws` random subsets of that many training labels per class."""
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(draws if per_class else 1):
        rows = np.arange(len(train_y))
        if per_class:
            rows = np.concatenate([
                rng.choice(np.flatnonzero(train_y == c), per_class, replace=False)
                for c in np.unique(train_y)])
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        clf.fit(train_x[rows], train_y[rows])
        scores.append(clf.score(test_x, test_y))
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--projector", default="512-512")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="lars", choices=("adamw", "lars"))
    p.add_argument("--lr-weights", type=float, default=1.0,
                   help="learning rate of the weights per 256 images (pretrain.py's default "
                        "is the paper's 0.2; 1.0 did better in 20 epochs here)")
    p.add_argument("--size", type=int, default=32, help="image size")
    p.add_argument("--crop-scale", type=float, nargs=2, default=(0.3, 1.0))
    p.add_argument("--flip", action="store_true", help="flip digits too (off: a 2 is no 5)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="pretraining output directory (default: a temporary one)")
    args = p.parse_args(argv)

    images, labels, raw = digit_images(args.size)
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=1 / 3,
                                           stratify=labels, random_state=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "run")
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in idx_train:
            images[i].save(folder / f"{i:04d}.png")
        cli = ["--images", str(folder), "--out", str(out), "--backbone", args.backbone,
               "--projector", args.projector, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--optimizer", args.optimizer,
               "--image-size", str(args.size), "--crop-scale", *map(str, args.crop_scale),
               "--workers", str(args.workers), "--seed", str(args.seed), "--device", args.device]
        if args.lr_weights is not None:
            cli += ["--lr-weights", str(args.lr_weights)]
        if not args.flip:
            cli.append("--no-flip")
        start = time.time()
        if pretrain.main(cli):  # its error is printed; no backbone to probe
            return 1
        pretrain_time = time.time() - start
        trained, config = load_backbone(out)

    # the weights pretraining started from: its seed, then the same construction
    pretrain.seed_everything(args.seed)
    backbones = [("random init (where pretraining started)",
                  BarlowTwins(args.backbone, args.projector).backbone, 0.0, 0)]
    # timm zero-initialises the last norm of every residual block, so a random ResNet is
    # nearly its stem plus strided 1x1 convolutions: at 32 px its pooled features see a
    # corner of the image. Without that, random features are a much stronger baseline.
    try:
        pretrain.seed_everything(args.seed)
        backbones.append(("random init, no zero-init residuals",
                          timm.create_model(args.backbone, num_classes=0, zero_init_last=False),
                          0.0, 0))
    except TypeError:  # not a timm ResNet
        pass
    backbones.append(("Barlow Twins", trained, pretrain_time, args.epochs))

    train_y, test_y = labels[idx_train], labels[idx_test]
    rows = []
    for name, backbone, secs, epochs in backbones:
        f = features(backbone, images, config["mean"], config["std"])
        rows.append((name, probe(f[idx_train], train_y, f[idx_test], test_y),
                     probe(f[idx_train], train_y, f[idx_test], test_y, per_class=10),
                     f.shape[1], f"{secs:.0f} s", str(epochs)))
    rows.append(("raw 8x8 pixels (reference)",
                 probe(raw[idx_train], train_y, raw[idx_test], test_y),
                 probe(raw[idx_train], train_y, raw[idx_test], test_y, per_class=10),
                 raw.shape[1], "-", "-"))

    print(f"\nsklearn digits: {len(idx_train)} train / {len(idx_test)} test images at "
          f"{args.size} px; backbone {args.backbone}, projector {args.projector}, "
          f"{args.optimizer} (lr-weights {args.lr_weights}), batch {args.batch_size}, "
          f"crop scale {tuple(args.crop_scale)}, flip {args.flip}; "
          f"{torch.get_num_threads()} torch threads\n")
    print("| features | probe accuracy (all labels) | probe accuracy (10 labels/class) "
          "| feature dim | pretrain time | epochs |")
    print("|---|---|---|---|---|---|")
    for name, acc, few, dim, secs, epochs in rows:
        print(f"| {name} | {acc:.3f} | {few:.3f} | {dim} | {secs} | {epochs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
