"""The long fuzz run: every reader of user input with 25 times the suite's examples.

The suite fuzzes each reader (scenario files, config files, ``--toxic``, the
HTTP API from its OpenAPI description) for a few seconds; this runs the same
strategies with many more examples, in a pytest of its own, and prints one
JSON object: how long it took and whether every input gave a result or one
clear error. Exit status: pytest's (0: nothing found).

    .venv/bin/python bench/fuzz.py           # the long run, a minute or two
    .venv/bin/python bench/fuzz.py --quick   # the suite's own short run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the suite's short run only")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.quick:
        target = ["tests/test_fuzz.py", "-m", "not slow"]
        env.pop("ASYNCFAULTS_SLOW", None)
    else:
        target = ["tests/test_fuzz.py::test_a_long_run_of_every_reader", "-s"]
        env["ASYNCFAULTS_SLOW"] = "1"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q", *target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    print(
        json.dumps(
            {
                "run": "quick" if args.quick else "long (25x the suite's examples)",
                "seconds": round(elapsed, 1),
                "result": lines[-1] if lines else "",
                "nothing_found": done.returncode == 0,
            }
        )
    )
    if done.returncode != 0:
        print(done.stdout[-5000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
