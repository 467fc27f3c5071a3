"""distributed.py and the commands run under torchrun: the flags reach the script, a failure
on one rank is raised on every rank, and a rank that dies fails the job without output."""
import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed.run import get_args_parser

# The CLIs are imported in the test that reads their parsers, not here: the workers that
# mp.spawn starts import this module, and the CLIs' imports (sklearn, matplotlib, timm) took
# each of them several seconds before it ran a line of its own.
from hateful_memes.runtime import distributed

ROOT = Path(__file__).resolve().parents[2]


def _passes(script: str, flag: str) -> bool:
    try:
        args = get_args_parser().parse_args(["--nproc_per_node=2", script, flag, "x"])
    except SystemExit:
        return False
    return (args.training_script, args.training_script_args) == (script, [flag, "x"])


@pytest.mark.parametrize("script, clashing", [
    ("train.py", set()),
    ("predict.py", {"--run"}),  # its --model is the same option
    ("pretrain.py", set()),
])
def test_every_option_of_a_torchrun_command_reaches_the_script(script, clashing, capsys):
    """torchrun's parser takes a script's flag for its own when it abbreviates one of
    torchrun's (predict.py's --run could be --run-path): every option must have a spelling
    that passes through untouched, and the ones that do not are known."""
    parser = importlib.import_module(f"hateful_memes.cli.{script.removesuffix('.py')}")._parser
    actions = [a for a in parser()._actions if a.option_strings and a.dest != "help"]
    assert len(actions) > 5
    failing = set()
    for action in actions:
        ok = [flag for flag in action.option_strings if _passes(script, flag)]
        assert ok, f"{script}: no spelling of {action.option_strings} passes torchrun"
        failing |= set(action.option_strings) - set(ok)
    assert failing == clashing
    capsys.readouterr()  # torchrun's usage messages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank, world, port, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert distributed.init_from_env("cpu")[:2] == (rank, world)
    assert distributed.gather(lambda: rank * 10, "counting") == [0, 10]
    assert distributed.on_all(lambda: rank * 10, "counting") == rank * 10  # this rank's own

    def fail_on_1():
        if rank == 1:
            raise ValueError("meme 42: no caption")
        return rank

    said = []
    for fail in (fail_on_1, fail_alike, fail_apart):
        try:
            distributed.gather(fail, "reading memes")
        except Exception as e:
            said.append(f"{type(e).__name__}: {e} ({getattr(e, 'raised_on', 'unmarked')})")
    # Only failures travel: a result that cannot be sent (a lambda) stays on its rank.
    assert distributed.on_all(lambda: lambda: rank, "building")() == rank
    Path(f"{out}.{rank}").write_text("\n".join(said))
    distributed.finish()


def fail_alike():
    raise ValueError("train.json: no such file")


def fail_apart():
    raise ValueError(f"cuda:{distributed.rank_world()[0]}: out of memory")


def test_a_failure_on_one_rank_is_raised_on_every_rank_naming_it(tmp_path):
    """...and marked for commands.error_exit: said by the rank that raised it (unmarked), once
    (EVERY_RANK) when every rank raised it alike, never by a rank that only learnt of it."""
    out = tmp_path / "error"
    mp.spawn(_gather_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    assert Path(f"{out}.1").read_text().splitlines() == [
        "ValueError: meme 42: no caption (unmarked)",
        "ValueError: train.json: no such file (every rank)",
        "ValueError: cuda:1: out of memory (unmarked)"]
    assert Path(f"{out}.0").read_text().splitlines() == [
        "RankFailed: reading memes failed on rank 1 of 2: ValueError: meme 42: no caption "
        "(another rank)",
        "ValueError: train.json: no such file (every rank)",
        "ValueError: cuda:0: out of memory (unmarked)"]


def _machines_worker(rank, world, port, out):
    """Each rank on a machine of its own (torchrun's GROUP_RANK; LOCAL_RANK 0 on each)."""
    import signal

    os.environ.update(RANK=str(rank), LOCAL_RANK="0", GROUP_RANK=str(rank),
                      WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as at a terminal
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")

    def interrupted(ranks):
        def compute():
            if rank in ranks:  # `kill -INT` of this process alone
                os.kill(os.getpid(), signal.SIGINT)
            return rank
        return compute

    def fail_on_1():
        if rank == 1:
            raise ValueError("meme 42: no caption")
        return rank

    said = []
    for compute in (interrupted({1}), interrupted({0, 1}), fail_on_1):
        try:
            distributed.gather(compute, "reading memes")
        except (Exception, KeyboardInterrupt) as e:
            said.append(f"{type(e).__name__}: {e} ({getattr(e, 'raised_on', 'unmarked')})")
    if rank == 1:  # leaves, as a rank interrupted outside `gather` does, without a word
        Path(f"{out}.{rank}").write_text("\n".join(said))
        distributed.finish(wait=False)
        return
    try:
        distributed.gather(lambda: rank, "scoring")
    except distributed.RankFailed as e:
        said.append(f"{type(e).__name__}: {e} ({e.raised_on})")
    Path(f"{out}.{rank}").write_text("\n".join(said))
    distributed.finish(wait=False)


def test_on_several_machines_a_failure_elsewhere_is_marked_for_this_machine_to_say(tmp_path):
    """...and a rank interrupted alone says so while the others stop, instead of waiting for
    it: error_exit and ends_quietly say what these marks ask (test_commands.py)."""
    out = tmp_path / "said"
    from conftest import spawn_and_join
    spawn_and_join(_machines_worker, (2, _free_port(), str(out)), 120)
    assert Path(f"{out}.1").read_text().splitlines() == [
        "KeyboardInterrupt:  (some ranks)",  # rank 1 alone: it says it
        "KeyboardInterrupt:  (every rank)",  # like Ctrl-C: each machine's first process
        "ValueError: meme 42: no caption (unmarked)"]
    said = Path(f"{out}.0").read_text().splitlines()
    assert said[:3] == [
        # rank 0's machine has no failing rank: it says which rank failed
        "RankFailed: reading memes failed on rank 1 of 2: interrupted (another machine)",
        "KeyboardInterrupt:  (every rank)",
        "RankFailed: reading memes failed on rank 1 of 2: ValueError: meme 42: no caption "
        "(another machine)"]
    # Rank 1 left: the collective broke, and which rank failed is not known.
    assert said[3].startswith("RankFailed: scoring: another rank failed (Connection closed by "
                              "peer") and said[3].endswith("(another machine)"), said


def test_on_all_in_one_process_is_the_call_itself():
    assert distributed.on_all(lambda: 7, "counting") == 7
    with pytest.raises(ValueError, match="meme 42"):  # raised as it is, not wrapped
        distributed.on_all(lambda: (_ for _ in ()).throw(ValueError("meme 42")), "reading")


def test_one_process_is_rank_0_of_1():
    assert distributed.rank_world() == (0, 1)
    assert distributed.init_from_env("cpu") == (0, 1, torch.device("cpu"))


# Rank 1 dies (as from the OOM killer) once the scoring has begun: the job must fail and
# name it, and rank 0 must write nothing, not even a temp file.
DYING = """
import os, sys
sys.path.insert(0, {root!r})
from hateful_memes.cli import predict
from hateful_memes.engine import predictor
if os.environ["RANK"] == "1":
    def die(*args, **kwargs):
        os._exit(9)
    predictor.RunPredictor.raw_scores_of = die
sys.exit(predict.main(sys.argv[1:]))
"""


def test_a_rank_that_dies_fails_the_job_and_leaves_no_output(tiny_runs, demo_data, tmp_path):
    script = tmp_path / "dying_predict.py"
    script.write_text(DYING.format(root=str(ROOT)))
    out = tmp_path / "sub.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), "--model", str(tiny_runs / "A"), "--model", str(tiny_runs / "B"),
         "--input", str(demo_data / "annotations" / "dev.json"), "--out", str(out),
         "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "rank      : 1" in done.stderr and "exitcode  : 9" in done.stderr, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "dying_predict.py"]
