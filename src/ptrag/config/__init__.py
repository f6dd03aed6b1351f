"""Configuration: typed frozen dataclasses, TOML/YAML files, presets and ``a.b=c`` overrides."""

from ptrag.config.arms import ARMS, Arm, ModelKind, get_arm, parse_arms, register_arm
from ptrag.config.loading import (
    PRESETS,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    read_saved_config,
    save_config,
    saved_config_from_dict,
)
from ptrag.config.schema import (
    DEFAULT_ARM,
    DEFAULT_PRESET,
    Config,
    DataConfig,
    EmbeddingConfig,
    ModelConfig,
    PredictionConfig,
    RetrievalConfig,
    TrainConfig,
)

__all__ = [
    "ARMS",
    "DEFAULT_ARM",
    "DEFAULT_PRESET",
    "PRESETS",
    "Arm",
    "Config",
    "DataConfig",
    "EmbeddingConfig",
    "ModelConfig",
    "ModelKind",
    "PredictionConfig",
    "RetrievalConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "get_arm",
    "load_config",
    "parse_arms",
    "read_saved_config",
    "register_arm",
    "save_config",
    "saved_config_from_dict",
]
