"""Typed, frozen, validated-once configuration.

A YAML file (or nothing: the built-in defaults in ``sections.py``, identical to
``configs/default.yaml``) plus ``--set a.b=value`` overrides, applied to the raw dict
*before* validation so an override is checked exactly like the file (``loading.py``).
"""

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
    EvalConfig,
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
    "EvalConfig",
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
