"""Typed, frozen, validated-once configuration: the sections (``sections.py``) and reading
YAML + ``--set`` overrides into them (``loading.py``)."""

from nntrain.config.loading import (
    load_config,
    override,
    parse_assignment,
    read_yaml,
    set_dotted,
    to_yaml,
    validate,
)
from nntrain.config.sections import (
    DATASETS,
    TORCHVISION_SETS,
    AugmentConfig,
    Config,
    DataConfig,
    DiagnosticsConfig,
    ModelConfig,
    OptimizerConfig,
    OutputConfig,
    SanityConfig,
    TrainConfig,
)

__all__ = [
    "DATASETS",
    "TORCHVISION_SETS",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DiagnosticsConfig",
    "ModelConfig",
    "OptimizerConfig",
    "OutputConfig",
    "SanityConfig",
    "TrainConfig",
    "load_config",
    "override",
    "parse_assignment",
    "read_yaml",
    "set_dotted",
    "to_yaml",
    "validate",
]
