"""What happens to a ranking after the engine: score bounds, dedup, and MMR diversity."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from magpie.common.ports.index import Hit

# Float noise between two copies of one image, so that threshold 0 still catches them.
SCORE_EPSILON = 1e-6
MMR_LAMBDA = 0.7  # relevance vs diversity: mostly similar, never ten copies of one product
# Cosine above which two items count as the same product photographed alike (re-encoded or
# resized copies of one image score 0.98 and up with the default model).
NEAR_DUPLICATE = 0.95


def to_score(similarity: float) -> float:
    """The API's score (0..1, higher closer) of a cosine similarity: the cosine, clipped."""
    # Pooled ReLU features are never negative, so on real images the score is the cosine.
    return min(1.0, max(0.0, similarity))


def within_scores(hits: Sequence[Hit], score_min: float, score_max: float) -> list[Hit]:
    """The hits whose score lies in [score_min, score_max]."""
    return [h for h in hits if score_min <= to_score(h.score) <= score_max]


def dedup_by_score(hits: Sequence[Hit], threshold: float) -> list[Hit]:
    """Drop each hit scoring within `threshold` of the last one kept (ranking best first)."""
    # The reference's rule: duplicates score alike against any query.
    kept: list[Hit] = []
    for hit in hits:
        if kept and abs(kept[-1].score - hit.score) <= threshold + SCORE_EPSILON:
            continue
        kept.append(hit)
    return kept


@dataclass(frozen=True)
class Diversified:
    """An MMR ordering: the picks, and how many candidates were left that are no duplicate."""

    picked: list[Hit]
    eligible: int


def mmr(hits: Sequence[Hit], k: int, *, lambda_: float = MMR_LAMBDA,
        near_duplicate: float = NEAR_DUPLICATE) -> Diversified:
    """Near-duplicates out, then k picks by greedy maximal marginal relevance."""
    # `hits` carry vectors and their cosine to the query as score, best first. A hit within
    # `near_duplicate` of the query or of a better hit kept before it goes first, so that
    # `eligible` does not depend on k. Each pick then maximises lambda*relevance -
    # (1-lambda)*(max cosine to the picks so far); greedy picks do not depend on k either,
    # so page n is a prefix of any longer run.
    if not hits or k <= 0:
        return Diversified([], 0)
    vectors = np.array([h.vector for h in hits], dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    gram = vectors @ vectors.T
    kept: list[int] = []
    for i, hit in enumerate(hits):
        if hit.score < near_duplicate and (not kept or gram[i, kept].max() < near_duplicate):
            kept.append(i)
    if not kept:
        return Diversified([], 0)
    relevance = np.array([hits[i].score for i in kept], dtype=np.float64)
    sims = gram[np.ix_(kept, kept)]
    closest = np.full(len(kept), -np.inf)  # max cosine to any pick so far
    alive = np.ones(len(kept), dtype=bool)
    picked: list[int] = []
    while len(picked) < k and alive.any():
        penalty = closest if picked else 0.0  # nothing to be unlike before the first pick
        gain = np.where(alive, lambda_ * relevance - (1 - lambda_) * penalty, -np.inf)
        best = int(gain.argmax())
        picked.append(best)
        alive[best] = False
        closest = np.maximum(closest, sims[best])
    return Diversified([hits[kept[i]] for i in picked], len(kept))
