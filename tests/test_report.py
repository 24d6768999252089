"""nntrain report / runs: the one-page HTML report of a run and of a cv, the table of runs.

A module fixture runs ``nntrain sanity`` then ``nntrain train`` once on a tiny config (in process);
the oracles are recomputed here from the run's own files (summary.json, best.pt, the data).
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from helpers import cli

TINY = ["--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "train.epochs=2", "--set", "device=cpu"]


class Page(HTMLParser):
    """Every tag with its attributes, and the text of the page."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def imgs(self) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == "img"]

    def plain(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


def assert_self_contained(html: str) -> Page:
    page = Page(html)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    assert "@import" not in html and "url(" not in html  # no stylesheet or font fetched from CSS
    for img in page.imgs():
        assert img["src"].startswith("data:image/png;base64,"), img["src"][:60]
        png = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert img.get("alt")
    assert '<meta name="viewport"' in html and "@media print" in html and "@media (max-width" in html
    return page


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("report")
    args = [*TINY, "--set", f"output.runs_dir={root / 'runs'}"]
    sanity = cli(*["sanity", *args, "--json"])
    assert sanity.exit_code in (0, 1), sanity.output
    import sys

    argv, sys.argv = sys.argv, ["/somewhere/bin/nntrain", "train", *args]  # as the console script sees it
    try:
        res = cli(*["train", *args])
    finally:
        sys.argv = argv
    assert res.exit_code == 0, res.output
    (run,) = [d for d in (root / "runs").iterdir() if d.name.startswith("run-")]
    assert f"report         {run / 'report.html'}" in res.output
    return root, run, args, json.loads(sanity.output)


def test_train_writes_a_self_contained_report_with_the_runs_story(trained):
    root, run, _, sanity = trained
    html = (run / "report.html").read_text()
    page = assert_self_contained(html)
    text = page.plain()
    s = json.loads((run / "summary.json").read_text())
    # headline: test accuracy, best val and its epoch, why it stopped, time, device
    assert f"{100 * s['test_acc']:.2f}%" in text and f"{100 * s['best_val_acc']:.2f}%" in text
    assert f"at epoch {s['best_epoch']}" in text and "ran all 2 epochs" in text and "device cpu" in text
    # the resolved config, collapsed
    assert re.search(r"<details><summary>Resolved config", html)
    assert "channels:\n  - 4" in (run / "config.yaml").read_text() and "- 4" in text
    # class counts per split, from summary.json
    for c in s["classes"]:
        counts = [s["class_counts"][k][c] for k in ("train", "val", "test")]
        assert re.search(rf"<tr><td>{c}</td><td>{counts[0]}</td><td>{counts[1]}</td><td>{counts[2]}</td></tr>", html)
    # sanity results of the same config: every check, with its verdict
    for c in sanity["checks"]:
        assert c["name"] in text
    assert f"{sum(c['passed'] for c in sanity['checks'])} of {len(sanity['checks'])} passed" in text
    alts = [i["alt"] for i in page.imgs()]
    assert sum(a.startswith("training image of class") for a in alts) == 16
    assert "learning curves: loss, accuracy, learning rate" in alts and "test confusion matrix" in alts
    assert {"first-layer filters at initialization", "first-layer filters trained (best model)"} <= set(alts)
    # environment: versions and the command line
    import shlex

    assert f'torch</td><td class="l">{s["torch"]}' in html
    assert f"Command line: {shlex.join(['nntrain', 'train', *trained[2]])}" in text


def test_top_losses_and_per_class_scores_match_the_best_model(trained):
    import torch
    from torch.nn import functional as F

    from nntrain.config import load_config
    from nntrain.pipeline.reopen import load_model
    from nntrain.pipeline.setup import setup
    from nntrain.runs.files import load_checkpoint

    _, run, _, _ = trained
    section = (run / "report.html").read_text().split('<section id="top-losses">')[1].split("</section>")[0]
    text = Page(section).plain()
    s = setup(load_config(run / "config.yaml"))
    model = load_model(load_checkpoint(run / "best.pt"), run / "best.pt").eval()
    with torch.no_grad():
        logits = model(s.data.test.x)
    losses = F.cross_entropy(logits, s.data.test.y, reduction="none")
    wrong = logits.argmax(1) != s.data.test.y
    top = sorted(range(len(losses)), key=lambda i: (not wrong[i], -float(losses[i])))[:12]  # errors first
    shown = re.findall(r"loss (\S+)", text)
    assert shown == [f"{float(losses[i]):.3g}" for i in top]  # as the report rounds them
    assert len(re.findall(r"correct, unsure true ", text)) == sum(not wrong[i] for i in top)
    from nntrain.report.predictions import top_losses
    from nntrain.training.engine import evaluate

    n_wrong = int(wrong.sum())  # asked for 3 more than are wrong: the errors, then the 3 least sure correct ones
    shown = top_losses(evaluate(model, s.data.test, keep=True), s.data.test, list(s.data.classes), k=n_wrong + 3)
    assert [t["correct"] for t in shown] == [False] * n_wrong + [True] * 3
    right = sorted((float(losses[i]) for i in range(len(losses)) if not wrong[i]), reverse=True)[:3]
    assert [t["loss"] for t in shown[n_wrong:]] == pytest.approx(right, rel=1e-5)
    first = int(top[0])
    pred = int(logits[first].argmax())
    p = float(logits[first].softmax(0)[pred])
    cls = s.data.classes
    assert f"true {cls[int(s.data.test.y[first])]} · pred {cls[pred]} ({100 * p:.0f}%)" in text
    # recall per class = the per-class test accuracy training recorded (an independent computation)
    per_class = json.loads((run / "summary.json").read_text())["per_class_test"]
    for row in per_class:
        cells = rf"<td>{row['class']}</td><td>{row['n']}</td><td>[0-9.]+%</td><td>{100 * row['acc']:.1f}%</td>"
        assert re.search(cells, (run / "report.html").read_text())


def test_report_command_rebuilds_and_a_read_only_run_needs_out(trained, tmp_path, monkeypatch):
    _, run, _, _ = trained
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "report.html").unlink()
    res = cli(*["report", str(copy)])
    assert res.exit_code == 0 and (copy / "report.html").is_file(), res.output
    assert f"wrote {copy / 'report.html'}" in res.output
    before = sorted(p.name for p in copy.iterdir())
    import nntrain.report

    monkeypatch.setattr(nntrain.report, "writable", lambda d: False)  # a read-only directory (even as root)
    res = cli(*["report", str(copy)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith("error: ") and "read-only" in res.output
    assert "--out" in res.output and sorted(p.name for p in copy.iterdir()) == before
    out = tmp_path / "elsewhere.html"
    assert cli(*["report", str(copy), "--out", str(out)]).exit_code == 0
    assert_self_contained(out.read_text())
    res = cli(*["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "is not a directory" in res.output


def test_report_of_a_run_without_sanity_says_how_to_get_it(trained, tmp_path):
    _, run, _, _ = trained
    copy = tmp_path / "runs" / run.name  # another runs_dir: no sanity results beside it
    shutil.copytree(run, copy)
    cfg_text = (copy / "config.yaml").read_text().replace(str(run.parent), str(copy.parent))
    (copy / "config.yaml").write_text(cfg_text)
    assert cli(*["report", str(copy)]).exit_code == 0
    text = Page((copy / "report.html").read_text()).plain()
    assert "No sanity results for this config: run nntrain sanity" in text


def test_runs_table_sort_status_and_compare(trained, tmp_path, monkeypatch):
    root, run, args, _ = trained
    runs = root / "runs"
    res = cli(*["train", *args, "--set", "train.optimizer.lr=0.2", "--set", "output.run_name=fast"])
    assert res.exit_code == 0, res.output
    (fast,) = runs.glob("fast-*")
    res = cli(*["train", *args, "--set", "train.optimizer.lr=1e6", "--set", "output.run_name=boom"])
    assert res.exit_code == 1, res.output  # diverged
    res = cli(*["runs", str(runs), "--json", "--sort", "test_acc"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert {r["name"] for r in rows} == {run.name, fast.name} | {d.name for d in runs.glob("boom-*")}
    by_name = {r["name"]: r for r in rows}
    for d in (run, fast):
        s = json.loads((d / "summary.json").read_text())
        r = by_name[d.name]
        assert (r["test_acc"], r["best_val"], r["epochs"], r["time"]) == (
            s["test_acc"], s["best_val_acc"], s["epochs_run"], s["train_seconds"])  # fmt: skip
        assert (r["status"], r["dataset"], r["model"]) == ("finished", "digits", "cnn")
    (boom,) = runs.glob("boom-*")
    assert by_name[boom.name]["status"] == "diverged"
    accs = [r["test_acc"] for r in rows if r["test_acc"] is not None and not math.isnan(r["test_acc"])]
    assert accs == sorted(accs, reverse=True)
    (fast / "summary.json").unlink()  # a run stopped before its end
    res = cli(*["runs", str(runs)])
    assert re.search(rf"{fast.name} .* interrupted", res.output) and "sanity" not in res.output
    res = cli(*["runs", "--compare", str(run), str(boom), "--json"])
    c = json.loads(res.output)
    differ = set(c["config"])
    assert differ == {"train.optimizer.lr", "output.run_name"}
    assert c["config"]["train.optimizer.lr"] == [0.05, 1e6] and c["metrics"]["status"] == ["finished", "diverged"]
    res = cli(*["runs", "--compare", str(run), str(boom)])
    assert "train.optimizer.lr" in res.output and f"nntrain plot-curves {run} {boom}" in res.output
    suggested = re.search(r"nntrain (plot-curves .*)$", res.output, re.M).group(1).split()  # the suggestion works
    monkeypatch.chdir(tmp_path)
    assert cli(*suggested).exit_code == 0 and (tmp_path / suggested[-1]).stat().st_size > 0
    res = cli(*["runs", str(runs), "--sort", "speed"])
    assert res.exit_code == 2 and "error: --sort speed: unknown column" in res.output
    res = cli(*["runs", "--compare", str(run), str(tmp_path)])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_runs_skips_an_lr_sweep_folder_and_report_refuses_it_without_writing(trained, tmp_path):
    """Issue 32: `runs` listed an lr-sweep folder as 'interrupted, 0 epochs' and `report` wrote an
    'interrupted run' page into it."""
    from helpers import one_error_line

    root, run, args, _ = trained
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / run.name)
    res = cli("lr-sweep", *TINY, "--set", f"output.runs_dir={runs}", "--lrs", "0.05,0.1", "--epochs", "1")
    assert res.exit_code == 0, res.output
    (sweep,) = runs.glob("run-lr-sweep-*")
    res = cli("runs", str(runs), "--json")
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in json.loads(res.output)] == [run.name]
    res = cli("runs", str(runs))
    assert res.exit_code == 0 and sweep.name not in res.output and run.name in res.output
    before = sorted(p.name for p in sweep.iterdir())
    for extra in ([], ["--out", str(tmp_path / "sweep.html")]):
        res = cli("report", str(sweep), *extra)
        one_error_line(res, "is an lr-sweep folder", str(sweep / "lr-sweep.png"), str(sweep / "lr-sweep.json"))
    assert sorted(p.name for p in sweep.iterdir()) == before and "report.html" not in before
    assert not (tmp_path / "sweep.html").exists()


def test_runs_lists_a_damaged_run_as_damaged_and_still_shows_the_others(trained, tmp_path):
    """The new-user trial (issue 32): one run's cut summary.json made `runs` exit 2 for every run."""
    _, run, _, _ = trained
    runs = tmp_path / "runs"
    for name, damage in (("cut", "summary.json"), ("bad-config", "config.yaml")):
        shutil.copytree(run, runs / name)
        (runs / name / damage).write_text("{" if damage == "summary.json" else "model: [\n")
    shutil.copytree(run, runs / run.name)
    res = cli("runs", str(runs), "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    statuses = {n: r["status"] for n, r in rows.items()}
    assert statuses == {"cut": "damaged", "bad-config": "damaged", run.name: "finished"}
    assert rows["cut"]["model"] == "cnn" and rows["cut"]["test_acc"] is None  # what can be read is shown
    assert rows["bad-config"]["test_acc"] == rows[run.name]["test_acc"]


def test_cv_report_folds_interval_ranking_warnings_refit(tmp_path, one_torch_thread):
    from scipy import stats

    res = cli(
        "cv", *TINY, "--set", "model.name=mlp", "--set", f"output.runs_dir={tmp_path / 'runs'}", "--folds", "3",
        "--grid", "train.optimizer.lr=0.01,0.1", "--refit",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (d,) = (tmp_path / "runs").glob("cv-*")
    assert cli(*["report", str(d)]).exit_code == 0
    html = (d / "report.html").read_text()
    page = assert_self_contained(html)
    text = page.plain()
    s = json.loads((d / "summary.json").read_text())
    best = s["combos"][s["best"]]
    accs = [f["best_val_acc"] for f in best["folds"]]
    at = [f["val_acc_at"] for f in best["folds"]]  # the interval is around the headline: the common epoch's mean
    mean, sd = sum(at) / 3, (sum((a - sum(at) / 3) ** 2 for a in at) / 2) ** 0.5
    assert mean == pytest.approx(best["mean_val_acc"], abs=1e-12)
    half = stats.t.ppf(0.975, 2) * sd / 3**0.5
    assert f"{100 * (mean - half):.1f}% – {100 * (mean + half):.1f}%" in text
    assert f"{100 * best['mean_val_acc']:.2f}% ± {100 * best['std_val_acc']:.2f}%" in text
    for a in accs:
        assert f"{100 * a:.2f}%" in text
    # issue 32: the ranking says at which epoch each score is taken (one epoch common to all folds), and the
    # terminal's "last epoch" column says what it holds
    header = res.output.split("ranking by mean val accuracy at one epoch common to all folds", 1)[1].splitlines()[1]
    assert "  scored at epoch  val acc at last common epoch  out-of-fold acc" in header, header
    assert "<th>scored at epoch</th>" in html and f"<th>val acc at epoch {best['epoch']}</th>" in html
    for c in s["combos"]:
        assert re.search(rf"<td>{100 * c['std_val_acc']:.2f}%</td><td>{c['epoch']}</td>", html)
    for f in best["folds"]:  # each fold at the common epoch, then its own best, numbered 1..k
        assert (
            f"<tr><td>{f['fold']}</td><td>{f['n_train']}</td><td>{f['n_val']}</td><td>{100 * f['val_acc_at']:.2f}%"
            in html
        )
    assert [f["fold"] for f in best["folds"]] == [1, 2, 3]
    ranks = re.findall(r"<td>(\d)</td><td class=\"l\"><code>train.optimizer.lr=([0-9.]+)</code>", html)
    assert [float(lr) for _, lr in ranks] == [s["combos"][i]["params"]["train.optimizer.lr"] for i in s["ranking"]]
    for w in s["warnings"]:
        assert w in text
    refit = json.loads((d / "refit" / "summary.json").read_text())
    assert f"test accuracy {100 * refit['test_acc']:.2f}%" in text
    assert "mean val accuracy against each hyperparameter" in [i["alt"] for i in page.imgs()]


def test_cv_report_says_a_winning_zero_reg_lies_at_the_edge_of_the_range(tmp_path, one_torch_thread):
    """Issue 32: with train.reg=0 the smallest value tried and the winner, the report said every best
    value lies inside its range."""
    res = cli(
        "cv", *TINY, "--set", "model.name=mlp", "--set", f"output.runs_dir={tmp_path / 'runs'}", "--folds", "2",
        "--grid", "train.reg=0,0.5",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (d,) = (tmp_path / "runs").glob("cv-*")
    s = json.loads((d / "summary.json").read_text())
    assert s["best_params"] == {"train.reg": 0.0}  # a strong L2 term hurts a 2-epoch MLP
    edge = "best train.reg=0 is the smallest value tried, at the lower edge of the range: no regularization won"
    assert edge in res.output  # the terminal's warning
    assert cli("report", str(d)).exit_code == 0
    text = Page((d / "report.html").read_text()).plain()
    assert edge in text and "nothing smaller to try" in text
    assert "lies inside the range" not in text


def test_cv_confidence_interval_is_around_the_mean_the_report_heads_with(tmp_path, one_torch_thread):
    """The headline is the mean at the one common epoch; the interval was built from each fold's own best
    (biased upward), so it sat around another number."""
    from nntrain.report.cv import cv_context

    res = cli(
        "cv", *TINY, "--set", "model.name=mlp", "--set", f"output.runs_dir={tmp_path / 'runs'}", "--folds", "3",
        "--set", "train.epochs=5", "--set", "train.optimizer.lr=0.3",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (d,) = (tmp_path / "runs").glob("cv-*")
    s = json.loads((d / "summary.json").read_text())
    best = s["combos"][s["best"]]
    assert any(f["val_acc_at"] < f["best_val_acc"] for f in best["folds"])  # a fold peaked before the common epoch
    lo, hi = cv_context(d)["ci"]
    assert (lo + hi) / 2 == pytest.approx(best["mean_val_acc"], abs=1e-12)
    assert lo < best["mean_val_acc"] < hi


# --------------------------------------------------------------------------- in a real browser


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip(
            "!!! chromium is not installed: the report is NOT checked in a real browser. "
            "Install Debian's chromium (apt-get install -y chromium; .ci/run does) !!!"
        )
    return exe


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

# test-only: appended to a COPY of the report, records what the browser decoded (reports hold no script)
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify(imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight]));
  document.body.appendChild(out);
});
</script>"""


def test_report_renders_in_headless_chromium(trained, tmp_path):
    import numpy as np
    from PIL import Image

    exe = chromium()
    _, run, _, _ = trained
    moved = tmp_path / "mailed.html"  # out of its directory: it still holds everything
    shutil.copy(run / "report.html", moved)
    probe = tmp_path / "probe.html"
    probe.write_text(moved.read_text().replace("</body>", PROBE + "</body>"))
    base = [exe, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert m, dom.stderr[-2000:]
    decoded = json.loads(m.group(1).replace("&quot;", '"'))
    n_imgs = len(Page(moved.read_text()).imgs())
    assert len(decoded) == n_imgs >= 30
    assert all(ok and w > 0 and h > 0 for ok, w, h in decoded), decoded  # no broken-image icon
    shot = tmp_path / "shot.png"
    for width in (1200, 390):  # a laptop and a phone
        subprocess.run([*base, f"--window-size={width},1600", f"--screenshot={shot}", moved.as_uri()],
                       capture_output=True, timeout=120, check=True)  # fmt: skip
        px = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert px.shape[1] == width
        assert px.std() > 10 and (px < 128).mean() > 0.01  # not blank: text and pictures drawn
