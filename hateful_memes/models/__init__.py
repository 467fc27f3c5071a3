"""The networks and how they are fitted.

Read encoders.py first (image and text encoders made by name), then model.py (the fused
multi-label classifier), training.py (the training loop, resumable) and baselines.py (the
prior and TF-IDF reference systems).
"""
