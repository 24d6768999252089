"""Wall time of `nntrain sanity` (issue 3's goal: < 15 s on the default config, 2-core CPU).

Runs `python -m nntrain sanity --json` as a fresh process (startup and imports included)
from a temporary directory, REPEATS times, and prints the median wall time and each
check's own seconds (from the JSON). Usage: python scripts/bench_sanity.py [REPEATS] [-- --set k=v ...]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    repeats = int(args[0]) if args and args[0] != "--" else 3
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    walls, docs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "nntrain", "sanity", "--json", *extra],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - t0)
            if out.returncode not in (0, 1):
                sys.exit(f"nntrain sanity failed (exit {out.returncode}):\n{out.stderr}")
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
