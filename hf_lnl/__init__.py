"""hf_lnl: learning with noisy labels for the Hugging Face Trainer (IDO and CLID-MU)."""

from .callbacks import WrongEventCallback
from .clid import clid
from .config import NoisyLabelConfig
from .data import IGNORE_INDEX, add_sample_index
from .finite import NonFiniteGradientError, NonFiniteLossError, NonFiniteTrainingError
from .human_noise import attach_human_noise, load_cifar_n_labels
from .methods import Citation, LNLMethod, MethodContext, MethodOutput, get_method, register_method
from .metrics import (
    accuracy,
    compute_accuracy_metrics,
    estimated_noise_rate,
    load_noisy_label_metric,
    noise_detection_metrics,
)
from .noise import NoiseSummary, add_label_noise, noise_summary, text_embeddings
from .report import clean_dataset, cleanlab_inputs
from .state import CheckpointStateError
from .trainer import NoisyLabelTrainer

__version__ = "0.2.1"

__all__ = [
    "IGNORE_INDEX",
    "CheckpointStateError",
    "Citation",
    "LNLMethod",
    "MethodContext",
    "MethodOutput",
    "NoiseSummary",
    "NoisyLabelConfig",
    "NoisyLabelTrainer",
    "NonFiniteGradientError",
    "NonFiniteLossError",
    "NonFiniteTrainingError",
    "WrongEventCallback",
    "accuracy",
    "add_label_noise",
    "add_sample_index",
    "attach_human_noise",
    "clean_dataset",
    "cleanlab_inputs",
    "clid",
    "compute_accuracy_metrics",
    "estimated_noise_rate",
    "get_method",
    "load_cifar_n_labels",
    "load_noisy_label_metric",
    "noise_detection_metrics",
    "noise_summary",
    "register_method",
    "text_embeddings",
]
