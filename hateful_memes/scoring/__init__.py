"""From a trained run to the scores written and the label sets people read.

Read predictor.py first (one trained run as a scorer: the one code path from memes to
scores), then thresholds.py (per-label thresholds folded into the scores), prior.py (scores
moved to another prevalence) and decision.py (one consistent label set per meme).
"""
