"""How long the lessons take under nbval, each and in all, as CI runs them.

Runs ``pytest notebooks/NN-*.ipynb --nbval`` (the lessons, not the exercises) in one
process per round and sums pytest's own per-cell durations (kernel start-up included) per
notebook. Prints medians over the rounds and the headline lines ``lessons_nbval_total_s``
and ``lessons_nbval_max_s``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+(notebooks/[^:]+\.ipynb)::")


def one_round(lessons: list[Path]) -> tuple[float, dict[str, float]]:
    """Run the lessons once; return the wall time and the seconds spent per notebook."""
    command = [
        sys.executable, "-m", "pytest", *map(str, lessons), "--nbval", "--nbval-current-env",
        "--nbval-sanitize-with", "notebooks/sanitize.cfg", "-q", "--durations=0", "--durations-min=0",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"nbval failed:\n{done.stdout[-3000:]}")
    per_notebook: dict[str, float] = defaultdict(float)
    for line in done.stdout.splitlines():
        match = _DURATION.match(line)
        if match:
            per_notebook[Path(match.group(2)).name] += float(match.group(1))
    return wall, per_notebook


def main(rounds: int) -> None:
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    walls, per_round = [], []
    for _ in range(rounds):
        wall, per_notebook = one_round(lessons)
        walls.append(wall)
        per_round.append(per_notebook)
    medians = {name: statistics.median(r[name] for r in per_round) for name in per_round[0]}
    for name, seconds in sorted(medians.items()):
        print(f"{name}: {seconds:.1f} s")
    print(f"rounds={rounds} lessons={len(lessons)}")
    print(f"lessons_nbval_total_s={statistics.median(walls):.1f}")
    print(f"lessons_nbval_max_s={max(medians.values()):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
