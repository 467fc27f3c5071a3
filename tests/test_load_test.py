"""experiments/load_test.py: a --url with nothing behind it is a clear error within
--connect-timeout, naming the URL, not ten minutes of retries."""
import socket
import time

import pytest

from conftest import experiment_script


@pytest.fixture(scope="module")
def load_test():
    with experiment_script("load_test") as module:
        yield module


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_url_with_nothing_there_fails_fast_naming_it(load_test, capsys):
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    assert load_test.main(["--url", url, "--connect-timeout", "1"]) == 2
    assert time.monotonic() - t0 < 15
    err = capsys.readouterr().err
    assert url in err and "within 1 s (--connect-timeout)" in err


def test_the_connect_timeout_is_short_by_default_and_positive(load_test, capsys):
    with pytest.raises(SystemExit) as e:
        load_test.main(["--url", "http://127.0.0.1:1", "--connect-timeout", "0"])
    assert e.value.code == 2 and "argument --connect-timeout" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_test.main(["--help"])
    assert "(default 30)" in capsys.readouterr().out
