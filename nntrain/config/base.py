"""The base of every config section: frozen, no unknown keys, docstrings as the reference, no bool for a number."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic reads `epochs: true` as 1: a bool is accepted only where the key takes a bool
        if isinstance(v, bool) and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(v).lower()} is a yes/no value; this key takes a number or a name")
        return v


def _takes_bool(annotation: Any) -> bool:
    return annotation is bool or any(_takes_bool(a) for a in get_args(annotation))
