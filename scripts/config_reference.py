"""Print the README's config-key table from the pydantic models (defaults and docstrings).

    python scripts/config_reference.py            # print the table
    python scripts/config_reference.py --write    # replace it in README.md

tests/test_readme.py fails when README.md and this output differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel  # noqa: E402

from nntrain.config import Config

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


def replace_in(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        p = Path(__file__).resolve().parent.parent / "README.md"
        p.write_text(replace_in(p.read_text()))
    else:
        print(table())
