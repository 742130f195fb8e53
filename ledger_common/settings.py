"""Typed settings from the environment: one msgspec Struct per component, filled from prefixed variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


def load_from_env(cls: type[T], prefixes: tuple[str, ...], environ: Mapping[str, str] | None = None, *,
                  defaults: Mapping[str, object] | None = None, **overrides) -> T:
    """Every field of `cls` from <PREFIX><FIELD> (the first prefix that has it wins), converted to the field's
    type; `defaults` give way to the environment, `overrides` win over both."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = dict(defaults or {})
    for field in msgspec.structs.fields(cls):
        for prefix in prefixes:
            raw = env.get(prefix + field.name.upper())
            if raw is not None:
                values[field.name] = raw
                break
    values.update(overrides)
    return msgspec.convert(values, cls, strict=False)
