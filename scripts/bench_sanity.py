"""Wall time of `nntrain sanity` (issue 3's goal: < 15 s on the default config, 2-core CPU).

Runs `python -m nntrain sanity --json` as a fresh process (startup and imports included)
from a temporary directory, REPEATS times, and prints the median wall time and each
check's own seconds (from the JSON). Usage: python scripts/bench_sanity.py [--reps N | N] [-- --set k=v ...]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile

from benchlib import arguments, run_wall


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # passed on to `nntrain sanity`
    ap = arguments(__doc__, reps=3, device=None, threads=False)
    ap.add_argument("repeats", nargs="?", type=int, help="the same as --reps (the older spelling)")
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    repeats = args.repeats or args.reps
    walls, docs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            wall, out = run_wall([sys.executable, "-m", "nntrain", "sanity", "--json", *extra], tmp, ok=(0, 1))
            walls.append(wall)
            docs.append(json.loads(out.stdout))
    print(
        f"nntrain sanity wall time: median {statistics.median(walls):.2f} s over {repeats} runs "
        f"(min {min(walls):.2f}, max {max(walls):.2f}); all passed: {all(d['passed'] for d in docs)}"
    )
    names = [c["name"] for c in docs[0]["checks"]]
    for i, name in enumerate(names):
        secs = statistics.median(d["checks"][i]["seconds"] for d in docs)
        print(f"  {name:<20} {secs:6.2f} s  {docs[-1]['checks'][i]['measured']}")
    checks = sum(statistics.median(d["checks"][i]["seconds"] for d in docs) for i in range(len(names)))
    print(f"  {'(startup + setup)':<20} {statistics.median(walls) - checks:6.2f} s")


if __name__ == "__main__":
    main()
