"""Evaluation of a model version from its predicted probabilities (the MIA lives in models.audit)."""

from __future__ import annotations

import numpy as np

from models.audit import loss_mia_auc

__all__ = ["accuracy", "loss_mia_auc", "per_sample_loss"]


def per_sample_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy per sample from predicted probabilities."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")
