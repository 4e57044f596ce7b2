"""Per-sample learning-event proxies recorded during training (algorithms.md sec. 3).

Zhao et al., arXiv 2406.01257 (RUM) and arXiv 2410.16516, sec. 3: running means over training
steps of p(true label) (C-proxy), max_c p_c, prediction entropy and correctness. They cannot be
recovered after training, so every training recipe feeds this accumulator with the probabilities it
already computed for its mini-batch (zero extra grad-evals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PROXIES = ("confidence", "max_confidence", "entropy", "binary_accuracy")
# Direction in which a proxy indicates high memorisation (algorithms.md sec. 3 table).
HIGH_MEMORISATION_WHEN = {
    "confidence": "low",
    "max_confidence": "low",
    "entropy": "high",
    "binary_accuracy": "low",
}


@dataclass
class LearningEvents:
    """Running sums (4 floats and a count per sample), indexed by training-row position."""

    sums: torch.Tensor  # (n, 4) float64
    counts: torch.Tensor  # (n,) int64

    @classmethod
    def zeros(cls, n: int) -> LearningEvents:
        return cls(
            torch.zeros((n, len(PROXIES)), dtype=torch.float64), torch.zeros(n, dtype=torch.int64)
        )

    def record(self, rows: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one observation for each of `rows` from its predicted probabilities."""
        p = probs.detach().to(torch.float64)
        conf = p[torch.arange(len(labels)), labels]
        maxc, argmax = p.max(dim=1)
        entropy = -(p * torch.log(torch.clamp(p, min=1e-12))).sum(dim=1)
        correct = (argmax == labels).to(torch.float64)
        self.sums.index_add_(0, rows, torch.stack([conf, maxc, entropy, correct], dim=1))
        self.counts.index_add_(0, rows, torch.ones_like(rows, dtype=torch.int64))

    def means(self) -> dict[str, np.ndarray]:
        """Proxy name -> running mean per sample (NaN for a sample never visited)."""
        c = self.counts.to(torch.float64).unsqueeze(1)
        m = torch.where(
            c > 0, self.sums / torch.clamp(c, min=1), torch.full_like(self.sums, float("nan"))
        )
        return {name: m[:, j].numpy() for j, name in enumerate(PROXIES)}
