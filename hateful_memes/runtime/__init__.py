"""Plumbing every command shares; imports nothing else of the package.

Read files.py first (atomic writes), then rundir.py (guarding output folders),
checkpoints.py (reading `.pt` files without running code), progress.py (progress bars and
log lines), pipes.py (a command whose stdout reader goes away ends quietly) and
distributed.py (torch.distributed under torchrun).
"""
