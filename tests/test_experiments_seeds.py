"""Every experiments script that takes --seeds reads it alike (bench.add_seeds): "0 1 2" and
"0,1,2" both work, as the READMEs write them, and anything else is an argparse error naming the
flag, never a traceback."""
import argparse

import pytest

from conftest import experiment_script

# script -> the arguments it needs besides --seeds
SCRIPTS = {"bench": [], "designs": ["fusion"], "text_only_analysis": [], "unseen_check": [],
           "cooc_check": [], "ensemble_check": []}


class Parsed(Exception):
    """Raised with the parsed arguments instead of running the script."""


@pytest.fixture
def parse(monkeypatch):
    real = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise Parsed(real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)

    def run(script, argv):
        with experiment_script(script) as module, pytest.raises(Parsed) as e:
            module.main([*SCRIPTS[script], *argv])
        return e.value.args[0].seeds
    return run


@pytest.mark.parametrize("script", SCRIPTS)
def test_seeds_spaced_or_comma_separated(parse, script):
    assert parse(script, []) == [0, 1, 2]
    for argv in (["--seeds", "0", "1", "2"], ["--seeds", "0,1,2"], ["--seeds=0,1,2"],
                 ["--seeds", "0,", "1,", "2"], ["--seeds", "0,1", "2"]):
        assert parse(script, argv) == [0, 1, 2], argv
    assert parse(script, ["--seeds", "4"]) == [4]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("bad, says", [("x", "such as 0,1,2 or 0 1 2, got 'x'"),
                                       ("0,1.5", "got '0,1.5'"), (",", "got ','"),
                                       ("-1", "got '-1'"), ("1,1", "seed 1 given twice")])
def test_bad_seeds_are_an_argparse_error(parse, script, bad, says, capsys):
    # `parse` stops the script after parsing whatever it accepts: it never runs here.
    with experiment_script(script) as module, pytest.raises(SystemExit) as e:
        module.main([*SCRIPTS[script], "--seeds", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seeds" in err and says in err
