"""Configuration: typed frozen dataclasses, TOML/YAML files, presets and ``a.b=c`` overrides."""

from ptrag.config.loading import (
    PRESETS,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from ptrag.config.schema import (
    ARMS,
    Config,
    DataConfig,
    EmbeddingConfig,
    ModelConfig,
    RetrievalConfig,
    TrainConfig,
)

__all__ = [
    "ARMS",
    "PRESETS",
    "Config",
    "DataConfig",
    "EmbeddingConfig",
    "ModelConfig",
    "RetrievalConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]
