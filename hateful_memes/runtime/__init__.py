"""Plumbing every command shares; imports nothing else of the package.

Read files.py first (atomic writes), then rundir.py (guarding output folders),
checkpoints.py (reading `.pt` files without running code), progress.py (progress bars and
log lines), commands.py (a command cut short by `| head` or Ctrl-C ends without a traceback) and
distributed.py (torch.distributed under torchrun).
"""
