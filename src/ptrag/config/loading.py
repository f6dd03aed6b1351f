"""Read, validate, override and write configs.

A config is built from, in order: the dataclass defaults, a preset or file (TOML or YAML), then
``section.key=value`` overrides. Unknown keys and ill-typed values are errors that name the key
and, for typos, the closest valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import tomli_w

from ptrag.config.arms import get_arm
from ptrag.config.schema import DEFAULT_PRESET, Config
from ptrag.errors import ConfigError, EmbeddingError

__all__ = [
    "PRESETS",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_saved_config",
    "save_config",
    "saved_config_from_dict",
]

PRESETS: tuple[str, ...] = (DEFAULT_PRESET, "paper")


def _preset_text(name: str) -> str:
    return resources.files("ptrag.config").joinpath("presets", f"{name}.toml").read_text()


def _read_mapping(source: str | Path) -> dict[str, Any]:
    if str(source) in PRESETS:
        return tomllib.loads(_preset_text(str(source)))
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"Config {str(source)!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file."
        )
    text = path.read_text()
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # parse errors from either library
        raise ConfigError(f"Cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections, got {type(data).__name__}.")
    return data


def _closest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid keys: {', '.join(valid)}."


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, allowed))}, got {value!r}.")
        return value
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        return _coerce(value, options[0], where)
    if origin is tuple:
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        item_hint = get_args(hint)[0]
        return tuple(_coerce(item, item_hint, f"{where}[{i}]") for i, item in enumerate(items))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{where} must be true or false, got {value!r}.")
    if hint in (int, float, str):
        if isinstance(value, bool) and hint is not str:
            raise ConfigError(f"{where} must be a number, not a boolean; got {value!r}.")
        try:
            coerced = hint(value)
        except (TypeError, ValueError):
            kind = {"int": "an integer", "float": "a number", "str": "a string"}[hint.__name__]
            raise ConfigError(f"{where} must be {kind}, got {value!r}.") from None
        if hint is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
        return coerced
    return value


def _check_range(value: Any, metadata: typing.Mapping[str, Any], where: str) -> None:
    """The range a schema field declares (``at_least``, ``above``, ``fraction``)."""
    if "min" not in metadata or value is None:
        return
    low, high = metadata["min"], metadata.get("max_exclusive")
    exclusive = metadata.get("exclusive", False)
    if value < low or (exclusive and value == low) or (high is not None and value >= high):
        if high is not None:
            wanted = f"in [{low:g}, {high:g})"
        else:
            wanted = f"{'greater than' if exclusive else 'at least'} {low:g}"
        raise ConfigError(f"{where} must be {wanted}, got {value!r}.")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"Unknown config key {(where + key)!r}.{_closest(key, list(fields))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"Config section [{key}] must be a table, got {value!r}.")
            kwargs[key] = _build(hint, value, f"{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{where}{key}")
            _check_range(kwargs[key], fields[key].metadata, f"{where}{key}")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> Config:
    """A config from nested sections, every value type- and range-checked and the arm registered."""
    config: Config = _build(Config, data, "")
    get_arm(config.model.arm)
    from ptrag.embeddings.priors import check_sources

    try:
        check_sources(config.embedding.sources)
    except EmbeddingError as exc:
        raise ConfigError(str(exc)) from None
    if config.model.hidden_dim % config.model.n_heads:
        raise ConfigError(
            f"model.hidden_dim ({config.model.hidden_dim}) must be a multiple of model.n_heads "
            f"({config.model.n_heads})."
        )
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """A TOML-ready dict: ``None`` values are left out since TOML has no null."""

    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if v is not None}
        return list(obj) if isinstance(obj, tuple) else obj

    return strip(dataclasses.asdict(config))


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like section.key=value (e.g. train.max_steps=500).")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"Override {text!r} must name section.key, e.g. model.hidden_dim=64.")
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare strings such as ``model.arm=st`` need no quotes
    return parts, value


def apply_overrides(config: Config, overrides: typing.Sequence[str]) -> Config:
    data = dataclasses.asdict(config)
    for text in overrides:
        (section, key), value = _parse_override(text)
        if section not in data:
            raise ConfigError(
                f"Unknown config section {section!r} in {text!r}.{_closest(section, list(data))}"
            )
        data[section][key] = value
    return config_from_dict(data)


def load_config(source: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then a preset name or TOML/YAML file, then the arm's settings, then the overrides.

    The arm (``model.arm`` after the overrides) brings its own settings (``ptrag.config.arms``);
    they win over the preset or file, and ``section.key=value`` overrides win over them. A saved run
    config is read with :func:`config_from_dict`, which applies no arm settings.
    """
    base = config_from_dict(_read_mapping(source) if source is not None else {})
    arm = get_arm(apply_overrides(base, overrides).model.arm)
    return apply_overrides(base, [*arm.overrides, *overrides])


def saved_config_from_dict(data: dict[str, Any]) -> Config:
    """A config a run saved (config.toml or its checkpoint), exactly as it was saved.

    Runs saved before ``embedding.sources`` existed used the text prior alone, whatever today's
    default is.
    """
    embedding = dict(data.get("embedding", {}))
    embedding.setdefault("sources", ["text"])
    return config_from_dict({**data, "embedding": embedding})


def read_saved_config(path: str | Path) -> Config:
    """A config written by :func:`save_config` (a run's config.toml), exactly as it was saved."""
    return saved_config_from_dict(_read_mapping(path))


def save_config(config: Config, path: str | Path) -> None:
    from ptrag.io import atomic_write_text

    atomic_write_text(Path(path), tomli_w.dumps(config_to_dict(config)))
