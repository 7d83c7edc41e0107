"""Per-feature min/max/mean/median/std over many trials without holding them all in memory."""

from __future__ import annotations

import numpy as np


class StreamingStats:
    """Accumulates rows of (rows, features) arrays one trial at a time.

    min, max, mean and std are exact (float64 sums). The median comes from a uniform reservoir
    sample of rows capped at `max_values` numbers, so it is exact until the data outgrow the
    cap (a full 8,000-neuron mouse) and a close estimate after. The sample's generator is seeded,
    so the same data always give the same statistics.
    """

    def __init__(self, n_features: int, max_values: int = 4_000_000):
        self.n_features = n_features
        self.capacity = max(1, max_values // n_features)
        self.count = 0
        self.total = np.zeros(n_features)
        self.total_sq = np.zeros(n_features)
        self.low = np.full(n_features, np.inf)
        self.high = np.full(n_features, -np.inf)
        self.sample = np.empty((self.capacity, n_features), dtype=np.float32)
        self.filled = 0
        self._rng = np.random.default_rng(0)

    def update(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, self.n_features)
        if not len(rows):
            return
        wide = rows.astype(np.float64)
        self.total += wide.sum(0)
        self.total_sq += np.square(wide).sum(0)
        self.low = np.minimum(self.low, rows.min(0))
        self.high = np.maximum(self.high, rows.max(0))
        self._reservoir(rows)
        self.count += len(rows)

    def _reservoir(self, rows: np.ndarray) -> None:
        """Algorithm R, vectorised: row i (counting over all rows ever added) enters the sample
        with probability capacity / (i + 1), into a uniformly drawn slot, which keeps every row
        equally likely to be in the sample."""
        first = self.count
        room = self.capacity - self.filled
        if room > 0:
            taken = rows[:room]
            self.sample[self.filled : self.filled + len(taken)] = taken
            self.filled += len(taken)
            rows, first = rows[room:], first + len(taken)
        if len(rows):
            index = first + np.arange(len(rows))
            accepted = np.flatnonzero(self._rng.random(len(rows)) * (index + 1) < self.capacity)
            self.sample[self._rng.integers(0, self.capacity, len(accepted))] = rows[accepted]

    def result(self, pooled: bool = False) -> dict[str, np.ndarray]:
        """Per feature, or (pooled) one value over all features, as arrays of float32."""
        if not self.count:
            raise ValueError("no data were added, so there are no statistics to compute")
        count, total, total_sq = self.count, self.total, self.total_sq
        low, high, sample = self.low, self.high, self.sample[: self.filled]
        if pooled:
            count, total, total_sq = (
                count * self.n_features,
                total.sum(keepdims=True),
                total_sq.sum(keepdims=True),
            )
            low, high, sample = low.min(keepdims=True), high.max(keepdims=True), sample.reshape(-1, 1)
        mean = total / count
        var = np.maximum(total_sq / count - np.square(mean), 0.0)
        return {
            "min": low.astype(np.float32),
            "max": high.astype(np.float32),
            "mean": mean.astype(np.float32),
            "median": np.median(sample, axis=0).astype(np.float32),
            "std": np.sqrt(var).astype(np.float32),
        }
