"""The commands: argv in, orchestration, `main(argv=None) -> int` out.

Nothing else in the package imports from here; the scripts of the same names at the top of
the repository (train.py, predict.py, evaluate.py, pretrain.py) only call these `main`s.
Read train.py first (one run: folds, heads, thresholds, the run directory), then predict.py
(a run scores new memes), evaluate.py (scores a submission), pretrain.py (Barlow Twins on
unlabelled images) and demo_job.py (`make demo`: all of them on the generated demo set).
"""
