"""hf_lnl: learning with noisy labels for the Hugging Face Trainer (IDO and CLID-MU)."""

from .callbacks import WrongEventCallback
from .config import NoisyLabelConfig
from .data import add_sample_index
from .trainer import NoisyLabelTrainer, NonFiniteLossError
from .state import CheckpointStateError

__version__ = "0.1.0"

__all__ = [
    "CheckpointStateError",
    "NoisyLabelConfig",
    "NoisyLabelTrainer",
    "NonFiniteLossError",
    "WrongEventCallback",
    "add_sample_index",
]
