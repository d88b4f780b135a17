"""Training, fine-tuning (with distillation) and evaluation."""

from edgeskel.train.config import TrainConfig
from edgeskel.train.metrics import accuracy_summary, predict_logits, topk_accuracy
from edgeskel.train.trainer import fit

__all__ = ["TrainConfig", "accuracy_summary", "fit", "predict_logits", "topk_accuracy"]
