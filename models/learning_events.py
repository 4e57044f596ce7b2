"""Per-sample learning-event proxies recorded during training (algorithms.md sec. 3).

Zhao et al., arXiv 2406.01257 (RUM) and arXiv 2410.16516, sec. 3: running means over training
steps of p(true label) (C-proxy), max_c p_c, prediction entropy and correctness. Toneva et al.,
"An Empirical Study of Example Forgetting during Deep Neural Network Learning" (ICLR 2019, sec. 2):
forgetting events, the number of times a sample goes from classified right to wrong between two
consecutive observations; samples never classified right rank above all others (the paper counts
them as forgotten infinitely often). Most samples are never forgotten, so this proxy ties them at 0
exactly where Feldman & Zhang's estimator ties the samples every model gets right.

None of them can be recovered after training, so every training recipe feeds this accumulator with
the probabilities it already computed for its mini-batch (zero extra grad-evals). Observations are
buffered and folded in as one vectorised pass per ~n observed rows: per-batch bookkeeping cost more
wall time than the small mini-batch steps themselves (35% of an MLP's training on digits).
"""

from __future__ import annotations

import numpy as np
import torch

# Observations buffered before one vectorised fold: FLUSH_EPOCHS * n (about epochs of a
# mini-batch recipe), at most MAX_BUFFERED rows (~24 bytes each plus the class scores). Each fold
# costs ~25 tensor ops whatever its size, so on small data fewer folds cost less (digits logreg:
# ~5% CPU over training folding every epoch, ~1-3% every 16; benchmarks/memorization_proxies.py).
FLUSH_EPOCHS = 16
MAX_BUFFERED = 1 << 20
RUNNING_MEANS = ("confidence", "max_confidence", "entropy", "binary_accuracy")
PROXIES = (*RUNNING_MEANS, "forgetting_events")
# Direction in which a proxy indicates high memorisation (algorithms.md sec. 3 table; Toneva et al.).
HIGH_MEMORISATION_WHEN = {
    "confidence": "low",
    "max_confidence": "low",
    "entropy": "high",
    "binary_accuracy": "low",
    "forgetting_events": "high",
}


class LearningEvents:
    """Running sums (4 floats and a count), forgetting events and the last / any correctness per
    sample, indexed by training-row position."""

    def __init__(self, n: int) -> None:
        self._sums = torch.zeros((n, len(RUNNING_MEANS)), dtype=torch.float64)
        self._counts = torch.zeros(n, dtype=torch.int64)
        self._forgettings = torch.zeros(n, dtype=torch.int64)
        self._last_correct = torch.zeros(n, dtype=torch.bool)
        self._ever_correct = torch.zeros(n, dtype=torch.bool)
        # (rows, probabilities or logits, labels, are_logits), in training order
        self._buffer: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]] = []
        self._buffered = 0
        self._flush_at = max(1, min(FLUSH_EPOCHS * n, MAX_BUFFERED))

    @classmethod
    def zeros(cls, n: int) -> LearningEvents:
        return cls(n)

    @property
    def n(self) -> int:
        return int(self._counts.shape[0])

    @property
    def counts(self) -> torch.Tensor:
        """Observations per sample."""
        self._flush()
        return self._counts

    def record(self, rows: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one observation for each of `rows` (in training order) from its probabilities
        (`probs[..., c]`; leading dimensions are flattened, like those of rows and labels)."""
        self._add(rows, probs, labels, are_logits=False)

    def record_logits(self, rows: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """As `record`, from logits: the softmax runs once per fold, not once per mini-batch."""
        self._add(rows, logits, labels, are_logits=True)

    def _add(
        self, rows: torch.Tensor, v: torch.Tensor, labels: torch.Tensor, are_logits: bool
    ) -> None:
        # Only references are kept here: any per-batch tensor op costs about as much as a small
        # mini-batch's forward pass.
        self._buffer.append((rows, v.detach(), labels, are_logits))
        self._buffered += rows.numel()
        if self._buffered >= self._flush_at:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        classes = self._buffer[0][1].shape[-1]
        same_shape = len({b[0].dim() for b in self._buffer}) == 1

        def flat(i: int) -> torch.Tensor:
            # one cat along the batch axis, then one reshape (not one reshape per mini-batch)
            if same_shape:
                return torch.cat([b[i] for b in self._buffer], dim=-1).reshape(-1)
            return torch.cat([b[i].reshape(-1) for b in self._buffer])

        rows, labels = flat(0).to(torch.int64), flat(2).to(torch.int64)
        if same_shape and all(b[3] for b in self._buffer):
            logits = torch.cat([b[1] for b in self._buffer], dim=-2).reshape(-1, classes)
            log_p = torch.log_softmax(logits, dim=1)
        else:
            log_p = torch.cat(
                [
                    torch.log_softmax(b[1], dim=-1).reshape(-1, classes)
                    if b[3]
                    else torch.log(torch.clamp(b[1], min=1e-12)).reshape(-1, classes)
                    for b in self._buffer
                ]
            )
        self._buffer, self._buffered = [], 0
        p = log_p.exp()
        conf = p.gather(1, labels.unsqueeze(1)).squeeze(1)
        maxc, argmax = p.max(dim=1)
        entropy = -(p * log_p).sum(dim=1)
        correct = argmax == labels
        # Computed in the model's precision, summed in float64; index_add_ adds in index order,
        # so each sample's sum grows in training order.
        stats = torch.stack([conf, maxc, entropy, correct.to(p.dtype)], dim=1)
        self._sums.index_add_(0, rows, stats.to(torch.float64))
        self._counts.index_add_(0, rows, torch.ones_like(rows))
        # A buffer holds several looks at most rows (FLUSH_EPOCHS): order each row's observations
        # (a stable sort keeps training order) and compare each with the one before, the first
        # with the stored one.
        r, order = torch.sort(rows, stable=True)
        c = correct[order]
        first = torch.ones_like(c)
        first[1:] = r[1:] != r[:-1]
        before = torch.where(first, self._last_correct[r], torch.roll(c, 1))
        self._forgettings.index_add_(0, r, (before & ~c).to(torch.int64))
        last = torch.ones_like(c)
        last[:-1] = r[:-1] != r[1:]
        self._last_correct[r[last]] = c[last]
        self._ever_correct[r[c]] = True

    def add_at(self, positions: torch.Tensor | np.ndarray, part: LearningEvents) -> None:
        """Fold in `part`, whose row i is this accumulator's row positions[i] (a shard, or the
        retained rows of a retrain), for positions not observed here before."""
        idx = torch.as_tensor(np.asarray(positions), dtype=torch.int64)
        if len(idx) != part.n:
            raise ValueError(f"positions must name all {part.n} rows of part, got {len(idx)}")
        self._flush()
        part._flush()
        self._sums.index_add_(0, idx, part._sums)
        self._counts.index_add_(0, idx, part._counts)
        self._forgettings.index_add_(0, idx, part._forgettings)
        self._last_correct[idx] = part._last_correct
        self._ever_correct[idx] |= part._ever_correct

    def proxies(self) -> dict[str, np.ndarray]:
        """Proxy name -> value per sample (NaN for a sample never observed).

        Running means for RUNNING_MEANS; forgetting_events is a count, and a sample never
        classified right gets (most observations of any sample) + 1, above any possible count,
        as a finite stand-in for Toneva et al.'s infinity (JSON and SQL stay plain numbers)."""
        self._flush()
        c = self._counts.to(torch.float64)
        seen = c > 0
        m = torch.where(
            seen.unsqueeze(1),
            self._sums / torch.clamp(c, min=1).unsqueeze(1),
            torch.full_like(self._sums, float("nan")),
        )
        out = {name: m[:, j].numpy() for j, name in enumerate(RUNNING_MEANS)}
        never = float(self._counts.max()) + 1 if self.n else 0.0
        forgetting = torch.where(self._ever_correct, self._forgettings.to(torch.float64), never)
        out["forgetting_events"] = torch.where(seen, forgetting, float("nan")).numpy()
        return out
