"""L2-regularised logistic regression (binary or multinomial) with closed-form per-example gradients.

Closed forms keep the certified paths exact and fast: for unit-norm x the per-example loss gradient
is x (p - e_y)^T, whose norm is ||p - e_y|| (no autograd, no per-sample loop).
Weights are a (d, k) float64 tensor with k = 1 (binary, sigmoid) or k = classes (softmax).
"""

from __future__ import annotations

import torch

DTYPE = torch.float64


def output_width(classes: int) -> int:
    """Columns of the weight matrix: one logit for binary, one per class otherwise."""
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")
    return 1 if classes == 2 else classes


def smoothness(*, classes: int, m: float) -> float:
    """Smoothness L of mean logistic loss + (m/2)||w||^2 on unit-norm features.

    Chien et al., arXiv 2403.17105, sec. 5 setup: L = 1/4 + m (binary), 1 + m (multiclass)."""
    return (0.25 if classes == 2 else 1.0) + m


def probabilities(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities, shape (n, classes) (binary gives two columns)."""
    logits = x @ w
    if w.shape[1] == 1:
        p1 = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p1, p1], dim=1)
    return torch.softmax(logits, dim=1)


def per_example_loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per example (no regulariser), shape (n,)."""
    logits = x @ w
    if w.shape[1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0], y.to(logits.dtype), reduction="none"
        )
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def residuals(
    w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """p - e_y per example, shape (n, k): the per-example gradient is x_i outer residual_i.
    `probs` = probabilities(w, x) when the caller has them already (same values, no second pass)."""
    if probs is None:
        logits = x @ w
        if w.shape[1] == 1:
            return (torch.sigmoid(logits[:, 0]) - y.to(logits.dtype)).unsqueeze(1)
        r = torch.softmax(logits, dim=1)
    elif w.shape[1] == 1:
        return (probs[:, 1] - y.to(probs.dtype)).unsqueeze(1)
    else:
        r = probs.clone()
    r[torch.arange(len(y)), y] -= 1.0
    return r


def clipped_mean_gradient(
    w: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    clip: float,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of per-example loss gradients, each clipped to norm <= clip
    (`probs`: see `residuals`)."""
    r = residuals(w, x, y, probs=probs)
    norms = x.norm(dim=1) * r.norm(dim=1)
    scale = torch.clamp(clip / torch.clamp(norms, min=1e-30), max=1.0)
    return x.T @ (r * scale.unsqueeze(1)) / len(y)


def per_example_gradients(
    w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, clip: float
) -> torch.Tensor:
    """Per-example clipped loss gradients, shape (n, d, k). Memory n*d*k: use on small sets."""
    r = residuals(w, x, y)
    norms = x.norm(dim=1) * r.norm(dim=1)
    scale = torch.clamp(clip / torch.clamp(norms, min=1e-30), max=1.0)
    return torch.einsum("nd,nk->ndk", x, r * scale.unsqueeze(1))


def accuracy(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose most probable class is the label."""
    if len(y) == 0:
        return float("nan")
    return float((probabilities(w, x).argmax(dim=1) == y).to(DTYPE).mean())
