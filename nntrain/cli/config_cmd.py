"""``nntrain config show|validate``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from nntrain.cli.common import ConfigOpt, SetOpt, guarded, load_cfg


@guarded
def config_show(config: Optional[Path] = ConfigOpt, set_: Optional[List[str]] = SetOpt) -> None:
    """Print the resolved config (file + overrides + defaults) as YAML."""
    from nntrain.config import to_yaml

    print(to_yaml(load_cfg(config, set_, as_typed=True)), end="")


@guarded
def config_validate(files: List[Path] = typer.Argument(..., help="Config files to check.")) -> None:
    """Check config files; exit 2 naming every invalid one."""
    from nntrain.config import load_config
    from nntrain.errors import ConfigError

    bad = 0
    for f in files:
        try:
            load_config(f)
            print(f"ok       {f}")
        except ConfigError as e:
            bad += 1
            print(f"invalid  {f}: {e}")
    if bad:
        raise typer.Exit(2)
