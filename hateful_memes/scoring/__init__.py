"""From scores to the scores written and the label sets people read: pure functions of score
matrices and the label lists, nothing else.

Read calibration.py first (a Platt map per label, so that scores compare across labels), then
thresholds.py (per-label thresholds chosen out of fold and folded into the scores), prior.py
(scores moved to another prevalence) and decision.py (one consistent label set per meme).
engine/predictor.py applies them to a trained run's scores.
"""
