import importlib
import io
import sys

import pytest

from hateful_memes.runtime import commands


class ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone away (as `| head` leaves it); no file descriptor."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_pipe_returns_141_and_points_stdout_at_devnull(monkeypatch):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())

    @commands.ends_quietly
    def main(argv=None):
        print("a line nobody reads")
        return 0

    assert main([]) == commands.EXIT_BROKEN_PIPE == 141
    assert not isinstance(sys.stdout, ClosedPipe)
    print("later output goes nowhere, without an error")


def test_output_still_buffered_at_the_end_is_flushed_inside_the_guard(monkeypatch):
    class Buffered(ClosedPipe):  # writes are kept; the flush finds the reader gone
        def write(self, text):
            return len(text)

    monkeypatch.setattr(sys, "stdout", Buffered())
    assert commands.ends_quietly(lambda argv: 0)([]) == 141


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "--task", "A"])

    @commands.ends_quietly
    def main(argv=None):
        print("epoch 1/16")
        raise KeyboardInterrupt

    assert main([]) == commands.EXIT_INTERRUPTED == 130
    out, err = capsys.readouterr()
    assert out == "epoch 1/16\n"
    assert err.strip() == "train.py: interrupted"


def test_other_outcomes_pass_through(capsys):
    assert commands.ends_quietly(lambda argv: 3)(["x"]) == 3

    def fails(argv):
        raise ValueError("a bug stays a traceback")

    with pytest.raises(ValueError):
        commands.ends_quietly(fails)([])


@pytest.mark.parametrize("command", ["evaluate", "predict", "train", "pretrain", "demo_job"])
def test_every_command_exits_141_when_its_reader_goes_away(command, monkeypatch):
    # --help prints to stdout (argparse then raises SystemExit(0)): the cheapest output of all.
    main = importlib.import_module(f"hateful_memes.cli.{command}").main
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["--help"]) == 141


class Writes(io.StringIO):
    """A stderr that keeps each write apart: under torchrun the ranks share one, and only
    what goes out in one write stays on its own line."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return super().write(text)


@pytest.mark.parametrize("command, argv", [
    ("pretrain", ["--images", "{tmp}/nowhere", "--out", "{tmp}/out", "--device", "cpu"]),
    ("train", ["--task", "A", "--out", "{tmp}/out", "--epochs", "0"]),  # a bad setting
    ("train", ["--task", "A", "--train", "{tmp}/nowhere.json", "--out", "{tmp}/out",
               "--device", "cpu"]),  # a failure while running
    ("predict", ["--model", "{tmp}/no-run", "--input", "{tmp}/nowhere.json"]),
])
def test_an_error_line_is_one_write(command, argv, tmp_path, monkeypatch):
    module = importlib.import_module(f"hateful_memes.cli.{command}")
    err = Writes()
    monkeypatch.setattr(sys, "stderr", err)
    assert module.main([a.format(tmp=tmp_path) for a in argv]) == 1
    errors = [w for w in err.writes if w.startswith(f"{command}.py: error: ")]
    assert len(errors) == 1 and errors[0].endswith("\n"), err.writes


# --- errors under torchrun: the environment torchrun gives each rank --------------------------

def _as_rank(monkeypatch, rank: int, world: int, local_rank: int | None = None) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(rank if local_rank is None else local_rank))


@pytest.mark.parametrize("rank, world, local_rank, where, said", [
    (None, None, None, None, "train.py: error: no such file"),  # one process, no torchrun
    (0, 1, 0, None, "train.py: error: no such file"),  # torchrun with one process
    (0, 2, 0, commands.EVERY_RANK, "train.py: error: no such file"),  # for every rank
    (1, 2, 1, commands.EVERY_RANK, ""),  # rank 0 says it
    (5, 8, 1, commands.EVERY_RANK, ""),  # the first process of its machine says it
    (4, 8, 0, commands.EVERY_RANK, "train.py: error: no such file"),  # its machine's first
    (1, 2, 1, None, "train.py: error: rank 1 of 2: no such file"),  # this rank's alone
    (0, 2, 0, None, "train.py: error: rank 0 of 2: no such file"),
    (0, 2, 0, commands.ANOTHER_RANK, ""),  # the rank that failed says it
    # no rank of its machine failed: its first process says which did, the others nothing
    (4, 8, 0, commands.ANOTHER_MACHINE, "train.py: error: no such file"),
    (5, 8, 1, commands.ANOTHER_MACHINE, ""),
])
def test_an_error_is_said_once_under_torchrun(rank, world, local_rank, where, said, monkeypatch,
                                              capsys):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    if rank is not None:
        _as_rank(monkeypatch, rank, world, local_rank)
    error = ValueError("no such file")
    if where is not None:
        commands.raised_on(error, where)
    assert commands.error_exit("train.py", error) == 1  # on every rank
    assert capsys.readouterr().err.strip() == said


@pytest.mark.parametrize("command, argv", [
    ("train", ["--hidden", "wide"]),
    ("predict", ["--model", "runs/A"]),  # no --input or --images
    ("pretrain", ["--images", "img", "--epochs", "0"]),  # checked after parsing, as usage
])
def test_a_usage_error_is_said_by_rank_0_alone(command, argv, monkeypatch, capsys):
    """Under torchrun every rank parses the same command line: all of them stop (status 2),
    rank 0 alone says why."""
    main = importlib.import_module(f"hateful_memes.cli.{command}").main
    said = []
    for rank in (0, 1):
        _as_rank(monkeypatch, rank, 2)
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        said.append(capsys.readouterr().err)
    assert f"{command}.py: error: " in said[0] and said[1] == ""


@pytest.mark.parametrize("command", ["train", "predict", "pretrain"])
def test_help_is_printed_by_rank_0_alone(command, monkeypatch, capsys):
    """`torchrun --nproc_per_node 8 train.py --help` printed the help 8 times: it comes of the
    command line, alike on every rank, so rank 0 alone prints it and every rank exits 0."""
    main = importlib.import_module(f"hateful_memes.cli.{command}").main
    said = []
    for rank in (0, 1):
        _as_rank(monkeypatch, rank, 2)
        with pytest.raises(SystemExit) as stop:
            main(["--help"])
        assert stop.value.code == 0
        said.append(capsys.readouterr())
    assert said[0].out.startswith(f"usage: {command}.py") and said[0].err == ""
    assert said[1].out == said[1].err == ""


@pytest.mark.parametrize("rank, world, local_rank, where, said", [
    (None, None, None, None, "train.py: interrupted"),  # one process, no torchrun
    (0, 2, 0, None, "train.py: interrupted"),
    (1, 2, 1, None, ""),  # Ctrl-C reached rank 0 too: rank 0 says it
    (4, 8, 0, None, "train.py: interrupted"),  # the first process of its machine
    (1, 2, 1, commands.EVERY_RANK, ""),  # distributed.gather found every rank interrupted
    # ... and found this rank interrupted, not every one (`kill -INT` of one rank): it says so
    (1, 2, 1, commands.SOME_RANKS, "train.py: rank 1 of 2: interrupted"),
    (4, 8, 0, commands.SOME_RANKS, "train.py: rank 4 of 8: interrupted"),
])
def test_ctrl_c_is_said_once_under_torchrun(rank, world, local_rank, where, said, monkeypatch,
                                            capsys):
    """torchrun passes Ctrl-C to every rank: "interrupted" was said once per rank."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    if rank is not None:
        _as_rank(monkeypatch, rank, world, local_rank)
    monkeypatch.setattr(sys, "argv", ["train.py"])

    @commands.ends_quietly
    def main(argv=None):
        raise KeyboardInterrupt if where is None else commands.raised_on(KeyboardInterrupt(),
                                                                         where)

    assert main([]) == commands.EXIT_INTERRUPTED  # on every rank
    assert capsys.readouterr().err.strip() == said
