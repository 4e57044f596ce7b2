"""Evaluation of a model version: accuracy and a loss-threshold membership-inference AUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def per_sample_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy per sample from predicted probabilities."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def loss_mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """AUC of the loss-threshold attack (Yeom et al. 2018, sec. 3): -loss scores membership.

    0.5 means forgotten samples look like data the model never saw."""
    if len(member_losses) == 0 or len(nonmember_losses) == 0:
        return float("nan")
    scores = -np.concatenate([member_losses, nonmember_losses])
    truth = np.concatenate([np.ones(len(member_losses)), np.zeros(len(nonmember_losses))])
    return float(roc_auc_score(truth, scores))
