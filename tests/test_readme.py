"""The README and docs/ stay true: the config reference is generated from the code, the
README's test command is the one CI runs, it documents every command and links every page."""

from __future__ import annotations

import re
import sys

from helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))

import config_reference  # noqa: E402

README = (REPO / "README.md").read_text()


def test_config_table_matches_the_code():
    doc = config_reference.DOC.read_text()
    assert config_reference.START in doc and config_reference.END in doc
    assert config_reference.replace_in(doc) == doc, "run: python scripts/config_reference.py --write"


def test_readme_is_short_and_links_every_docs_page():
    assert len(README.splitlines()) <= 250
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in README, page.name


def test_quickstart_has_two_commands_and_ci_runs_the_test_one():
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", quick)
    assert len(commands) == 2 and "nntrain train" in commands[0] and "pytest" in commands[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_every_command_is_documented():
    from typer.main import get_command

    from nntrain.cli.app import app

    names = set(get_command(app).commands)
    for name in names:
        assert f"nntrain {name}" in README, name
