"""Peak memory of a whole run, helper processes included: `nntrain train` vs the bare script.

    python scripts/bench_memory.py [--reps 3]

`scripts/bench.py --only process` reports peak RSS as GNU time measures it: the largest single
process. `nntrain train` also runs helper processes (the scikit-learn calls, the pictures), so
this script samples the proportional set size (PSS: shared pages divided among the processes
that share them) of each command's whole process tree every 30 ms and reports the largest sum,
for `python -m nntrain train` (default config) and `scripts/bare_train.py --gc-tuned`,
alternating. Sampling can miss a short peak: compare medians of several repetitions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import HERE, arguments


def tree(root: int) -> list[int]:
    """``root`` and every process below it (from each process's parent in /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def pss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_pss(cmd: list[str]) -> float:
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, sum(pss_mib(p) for p in tree(proc.pid)))
            time.sleep(0.03)
        assert proc.returncode == 0, cmd
    return peak


def main() -> None:
    args = arguments(__doc__, reps=3, device=None, threads=False).parse_args()
    cmds = {
        "nntrain": [sys.executable, "-m", "nntrain", "train"],
        "bare": [sys.executable, str(HERE / "bare_train.py"), "cpu", "--gc-tuned"],
    }
    peaks: dict[str, list[float]] = {k: [] for k in cmds}
    for i in range(args.reps):
        for name in list(cmds)[:: 1 if i % 2 == 0 else -1]:
            peaks[name].append(peak_pss(cmds[name]))
    for name, v in peaks.items():
        print(
            f"[memory] {name:8s} peak PSS of the process tree: median {statistics.median(v):.0f} MiB "
            f"(reps {', '.join(f'{x:.0f}' for x in v)})"
        )
    ratio = statistics.median(peaks["nntrain"]) / statistics.median(peaks["bare"])
    print(f"[memory] ratio nntrain/bare = {ratio:.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
