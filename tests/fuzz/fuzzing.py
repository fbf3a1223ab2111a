"""Running a command in-process the way a user would, and the property every
fuzz case checks: exit 0, or exit 2 with a positioned or named message; never
a traceback and never a hang."""
from __future__ import annotations

import contextlib
import io
import re
import signal

from hypothesis import HealthCheck, event, settings

from netdsl.cli import main

# Fixed budgets, a fixed seed (derandomize) and no example database: CI sees the
# same cases on every run, in seconds.
def budget(examples: int):
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


class Hang(Exception):
    pass


POSITIONED = re.compile(r"^\S.*?:\d+:\d+: error: \S")
NAMED = re.compile(r"^(error: \S|usage: netdsl)")


def run_cli(argv: list[str], seconds: float = 20.0) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `netdsl argv`, raising Hang past `seconds`."""
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise Hang(f"netdsl {' '.join(argv)} ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own refusals: exit 2 with `usage:` and the option named
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


def assert_clean(argv: list[str], code: int, err: str) -> None:
    event(f"exit {code}" + (" positioned" if POSITIONED.match(err) else ""))  # --hypothesis-show-statistics
    assert "Traceback" not in err, err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        first = err.lstrip("\n").splitlines()[0] if err.strip() else ""
        assert POSITIONED.match(first) or NAMED.match(first), (argv, err)
        assert err.count("error:") == 1 or first.startswith("usage:"), (argv, err)
