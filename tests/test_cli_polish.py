"""What a new user sees around the commands: help without value types on flags, -h and
--version, help paragraphs not broken mid-sentence, run files honouring the umask, the resume
command after a second Ctrl-C, and no PNG written into the current folder unasked."""

from __future__ import annotations

import os
import re
import stat

import pytest
from helpers import REPO, cli, run_cli

TINY = ["--set", "model.channels=[4]", "--set", "model.hidden=[16]", "--set", "device=cpu"]


def test_help_shows_no_value_type_for_flags_and_accepts_dash_h(tmp_path):
    res = run_cli(["train", "-h"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    json_line = next(line for line in res.stdout.splitlines() if "--json" in line)
    assert "<bool>" not in res.stdout and "Print the run summary as JSON" in json_line
    assert "--help" in res.stdout and "-h" in res.stdout
    assert "KEY=VALUE" in res.stdout and "<list[str]>" not in res.stdout
    bad = run_cli(["train", "--json", "true"], cwd=tmp_path)  # a flag takes no value (as the help now says)
    assert bad.returncode == 2 and "true" in bad.stderr


def test_version(tmp_path):
    import nntrain

    res = run_cli(["--version"], cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"nntrain {nntrain.__version__}"


def test_command_help_is_reflowed_paragraphs_in_workflow_order(tmp_path):
    res = run_cli(["--help"], cwd=tmp_path)  # COLUMNS=200: each command's help fits on one line
    assert res.returncode == 0
    assert re.search(r"regularization, overfitting 20 samples, gradients", res.stdout), res.stdout
    names = re.findall(r"^│ (\S+)\s{2,}", res.stdout, flags=re.M)
    cmds = [n for n in names if not n.startswith("-")]
    assert cmds == ["data", "sanity", "lr-sweep", "train", "eval", "predict", "export", "plot-curves", "plot-filters",
                    "report", "runs", "cv", "config"]  # fmt: skip


@pytest.mark.parametrize("verb", ["cv", "train", "export", "predict", "report"])
def test_install_hints_in_help_keep_their_extra_and_name_existing_docs(verb, tmp_path):
    """rich reads "[postgres]" as markup and drops it: the help must show the whole pip command."""
    res = run_cli([verb, "--help"], cwd=tmp_path)
    assert res.returncode == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.stdout).split())
    for cmd in re.findall(r"pip install (\S+)", text):
        assert re.fullmatch(r"'nntrain\[[a-z]+\]'\)?;?", cmd), cmd
    for doc in re.findall(r"docs/[a-z-]+\.md", text):
        assert (REPO / doc).is_file(), doc
    assert "README's" not in text


def test_run_files_honour_the_umask(tmp_path, monkeypatch):
    from nntrain.runs.files import atomic_write_text

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            atomic_write_text(tmp_path / "f.txt", "x")
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode, oct(mask)


def test_a_second_ctrl_c_prints_the_resume_command(tmp_path, monkeypatch):
    import nntrain.cli.train as cli_train

    real = cli_train.FreezeHeap

    class SecondCtrlC(real):  # the second signal's KeyboardInterrupt: during epoch 1, or at the end of epoch 2
        during_first = True

        def on_epoch_metrics(self, record):
            if self.during_first and record["epoch"] == 1:  # before the first epoch's checkpoint
                raise KeyboardInterrupt

        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_train, "FreezeHeap", SecondCtrlC)
    res = cli(*["train", *TINY, "--set", "train.epochs=3", "--set", "output.checkpoint_seconds=3600"])
    assert res.exit_code == 130 and "nothing to resume" in res.output and "--resume" not in res.output, res.output
    SecondCtrlC.during_first = False  # last.pt after the first epoch, whatever checkpoint_seconds says
    res = cli(*["train", *TINY, "--set", "train.epochs=3", "--set", "output.checkpoint_seconds=3600"])
    assert res.exit_code == 130, res.output
    m = re.search(r"Resume with: nntrain train --resume (\S+)", res.output)
    assert m, res.output
    run = tmp_path / m.group(1)
    assert run.parent == tmp_path / "runs" and (run / "last.pt").is_file()
    monkeypatch.setattr(cli_train, "FreezeHeap", real)
    res = cli(*["train", "--resume", m.group(1)])
    assert res.exit_code == 0, res.output


def test_data_and_plot_curves_write_nothing_into_the_current_folder_unasked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli(*["data", "--set", "device=cpu"])
    assert res.exit_code == 0, res.output
    assert "--grid FILE.png" in res.output
    assert cli(*["train", *TINY, "--set", "train.epochs=1"]).exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    before = (run / "curves.png").read_bytes()
    res = cli(*["plot-curves", str(run)])
    assert res.exit_code == 2 and "--out" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no data-grid.png, no curves.png
    assert (run / "curves.png").read_bytes() == before
