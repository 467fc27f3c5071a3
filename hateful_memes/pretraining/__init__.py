"""Barlow Twins pretraining of an image backbone (the command is cli/pretrain.py).

Read barlow_twins.py first (the loss, the projector, the model and loading the pretrained
backbone), then augment.py (the two-view augmentation) and lars.py (the optimizer and its
learning-rate schedule).
"""
