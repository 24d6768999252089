"""Regenerate docs/mlflow-ui.png: start an MLflow server on 127.0.0.1 (SQLite in a temporary
directory), train the digits run with output.mlflow, screenshot its run page with headless Chromium
(Debian's ``chromium``). Usage: python scripts/mlflow_screenshot.py [--epochs N] [--out FILE]"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "mlflow-ui.png")
    ap.add_argument("--page", default="metrics", help="the run page's tab: overview or metrics (model-metrics)")
    args = ap.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("chromium is not installed: apt-get install -y chromium")
    work = Path(tempfile.mkdtemp(prefix="nntrain-mlflow-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--artifacts-destination", str(work / "art")],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        sets = ["device=cpu", "output.runs_dir=runs", f"train.epochs={args.epochs}", "output.mlflow=true",
                f"output.mlflow_uri={url}", "output.mlflow_experiment=digits-cnn"]  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "nntrain", "train", "--json", *sum((["--set", s] for s in sets), [])],
            check=True, capture_output=True, text=True, cwd=work,
        )  # fmt: skip
        summary = json.loads(out.stdout)["mlflow"]
        tab = "/model-metrics" if args.page == "metrics" else ""
        page = f"{url}/#/experiments/{summary['experiment_id']}/runs/{summary['run_id']}{tab}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={work / 'chromium'}", "--window-size=1400,900", "--hide-scrollbars",
             "--virtual-time-budget=60000", f"--screenshot={args.out.resolve()}", page],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        print(f"wrote {args.out} from {page}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
