"""Plumbing every command shares; imports nothing of the package but labels.

Read files.py first (atomic writes), then rundir.py (guarding output folders),
checkpoints.py (reading `.pt` files without running code), progress.py (progress bars and
log lines) and distributed.py (torch.distributed under torchrun).
"""
