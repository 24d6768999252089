"""Regenerate docs/report.png: train the default digits run, build its report, screenshot it with
headless Chromium (Debian's ``chromium``). Usage: python scripts/report_screenshot.py [--keep DIR]"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", type=Path, help="write the run here instead of a temporary directory")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    args = ap.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("chromium is not installed: apt-get install -y chromium")
    work = args.keep or Path(tempfile.mkdtemp(prefix="nntrain-report-"))
    runs = work / "runs"
    cmd = [sys.executable, "-m", "nntrain"]
    subprocess.run([*cmd, "sanity", "--set", "device=cpu", "--set", f"output.runs_dir={runs}"], check=False)
    subprocess.run([*cmd, "train", "--set", "device=cpu", "--set", f"output.runs_dir={runs}"], check=True)
    report = sorted(runs.glob("run-*/report.html"))[-1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={work / 'chromium'}", "--window-size=1100,2600", "--hide-scrollbars",
         f"--screenshot={args.out.resolve()}", report.as_uri()],
        check=True, capture_output=True,
    )  # fmt: skip
    print(f"wrote {args.out} from {report}")


if __name__ == "__main__":
    main()
