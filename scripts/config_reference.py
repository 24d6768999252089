"""Print the config-key table of docs/configuration.md from the pydantic models (defaults and docstrings).

    python scripts/config_reference.py            # print the table
    python scripts/config_reference.py --write    # replace it in docs/configuration.md

tests/test_readme.py fails when docs/configuration.md and this output differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "configuration.md"
sys.path.insert(0, str(REPO))

from pydantic import BaseModel  # noqa: E402

from nntrain.config import Config  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def rows(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from rows(ann, f"{prefix}{name}.")
            continue
        default = field.default
        default = list(default) if isinstance(default, tuple) else default
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        text = (field.description or "").replace("\n", " ").replace("|", "\\|")
        yield f"| `{prefix}{name}` | `{shown}` | {text} |"


def table() -> str:
    return "\n".join(["| key | default | meaning |", "| --- | --- | --- |", *rows(Config)])


def replace_in(doc: str) -> str:
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(replace_in(DOC.read_text()))
    else:
        print(table())
