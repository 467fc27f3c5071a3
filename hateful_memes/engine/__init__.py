"""Running the model: the training loop that fits it, and a trained run as a scorer.

Read training.py first (`fit`: epochs over cached features or raw inputs, epoch selection,
a resumable state, DDP under torchrun; `predict_scores`), then predictor.py (one trained run
as a scorer: its bagged heads and TF-IDF view blended, thresholds and prior applied, the one
code path from memes to written scores). Both sit above models/ and features/ (what they
run) and evaluation/ (the metric that selects epochs), and below serving/ and cli/.
"""
