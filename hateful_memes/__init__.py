"""Multimodal models for the WOAH 2021 fine-grained hateful memes shared task.

The public Python API is small:

- `MemeClassifier` (hateful_memes.serving.api): `MemeClassifier.load(run_dir, ...)` then
  `predict(images=..., texts=...)`, one result a meme (scores, decided labels, caption, OCR).
- `Prediction`: that result (`to_dict()` for JSON).

Everything else is reached through the command lines (train.py, predict.py, evaluate.py,
pretrain.py, serve.py) or the modules themselves. The modules are grouped by concern, each
subpackage importing only from those before it (tests/test_layout.py checks the order):
labels.py, runtime/, data/, scoring/, evaluation/, pretraining/, models/, features/, engine/,
serving/, and cli/ (the commands, which nothing imports).

The API is imported on first use: torch and the encoders take seconds to import, and
`import hateful_memes` alone should not pay for them.
"""

__version__ = "0.1.0"
__all__ = ["MemeClassifier", "Prediction"]


def __getattr__(name: str):
    if name in __all__:
        from .serving import api

        return getattr(api, name)
    raise AttributeError(f"module 'hateful_memes' has no attribute {name!r}")
