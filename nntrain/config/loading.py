"""Reading a config: YAML file + ``--set`` overrides → a validated ``Config``; every error
names the dotted key, the bad value and what is allowed."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nntrain.config.sections import Config
from nntrain.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path`` (None: built-in defaults), apply ``--set`` overrides, validate once."""
    raw = read_yaml(path) if path is not None else {}
    origins: dict[str, str] = {}
    for item in overrides:
        key, value = parse_assignment(item, flag="--set")
        set_dotted(raw, key, value, source=f"--set {item}")
        origins[key] = f"--set {item}"
    return validate(raw, source=str(path) if path is not None else "built-in defaults", origins=origins)


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML's last-wins would hide a typo)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(
                    problem=f"key '{key}' is given twice in one mapping; keep one", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        hint = "it is a directory" if p.is_dir() else "no such file"
        raise ConfigError(f"config file '{p}' cannot be read: {hint}; pass an existing YAML file to --config")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file '{p}' is not a text file (byte {e.object[e.start]:#04x} at offset {e.start} is not UTF-8); "
            "pass a YAML config file to --config"
        ) from None
    except OSError as e:
        raise ConfigError(f"config file '{p}' cannot be read: {e}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if isinstance(e, _DuplicateKey):
            raise ConfigError(f"{where}: {problem}") from None
        raise ConfigError(f"{where}: YAML syntax error: {problem}; fix the file and retry") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{p}: the top level must be a mapping of sections (seed, device, data, model, train, output, sanity, "
            "diagnostics, eval), "
            f"got {type(raw).__name__}"
        )
    return raw


def parse_assignment(item: str, *, flag: str) -> tuple[str, Any]:
    """'train.optimizer.lr=0.01' → ('train.optimizer.lr', 0.01); values are YAML scalars/lists."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"{flag} {item!r}: expected section.key=value, e.g. {flag} train.optimizer.lr=0.01")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value  # let validation say what is wrong with it
    return key, parsed


def set_dotted(raw: dict[str, Any], key: str, value: Any, *, source: str) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            dotted = ".".join(parts[: i + 1])
            raise ConfigError(f"{source}: '{dotted}' is a value, not a section; it has no key '{parts[i + 1]}'")
        node = child
    node[parts[-1]] = value


def validate(raw: dict[str, Any], *, source: str = "config", origins: dict[str, str] | None = None) -> Config:
    """``origins``: dotted key → the ``--set`` that set it, named in the message instead of ``source``."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()
        blamed = [_origin(err, origins or {}) for err in errors]
        lines = [_describe(err) for err in errors]
        if all(blamed):
            if len(set(blamed)) == 1:
                raise ConfigError(f"invalid {blamed[0]}: " + "; ".join(lines)) from None
            lines = [f"{b}: {line}" for b, line in zip(blamed, lines)]
            raise ConfigError("invalid --set:\n  " + "\n  ".join(lines)) from None
        lines = [f"{line} (from {b})" if b else line for b, line in zip(blamed, lines)]
        raise ConfigError(f"invalid config ({source}):\n  " + "\n  ".join(lines)) from None


def _origin(err: dict[str, Any], origins: dict[str, str]) -> str | None:
    """The --set behind a validation error: the one whose key is the error's location or contains it."""
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    if not loc:  # a check across sections names its key first: "eval.tta: ..."
        loc = err["msg"].removeprefix("Value error, ").partition(":")[0].split(".")
    for n in range(len(loc), 0, -1):
        found = origins.get(".".join(loc[:n]))
        if found:
            return found
    return None


def override(cfg: Config, changes: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted-key ``changes``, validated like a file."""
    raw = cfg.model_dump(mode="json")
    for key, value in changes.items():
        set_dotted(raw, key, value, source=key)
    return validate(raw, source="overrides")


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _describe(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc) or "<top level>"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        guess = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        return f"{dotted}: unknown key; {hint}allowed keys: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if not loc and isinstance(err.get("input"), dict):
        return msg  # a check across sections: its message names the key; the input is the whole config
    if err["type"] in ("list_type", "tuple_type") and isinstance(err.get("input"), (str, int, float)):
        items = str(err["input"]).replace(" ", "")
        return f"{dotted}: expected a list (got {err['input']!r}); write it in brackets: {dotted}=[{items}]"
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):  # not a section
        return f"{dotted}: {msg} (got {err['input']!r})"
    return f"{dotted}: {msg}"


def _fields_at(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)
