"""The average cosine distance of Section 3.2.2."""

import torch

__all__ = ["average_cosine_distance"]


def average_cosine_distance(vectors: torch.Tensor) -> float:
    """avg_dist = 1/N^2 sum_i sum_j dist(v_i, v_j), dist(v_i, v_j) = (1 - cos(v_i, v_j)) / 2,
    over the N rows of an (N, D) tensor (Section 3.2.2; all pairs, i = j included).

    Computed in O(N D) rather than O(N^2 D): with the unit vectors u_i = v_i / |v_i|,
    sum_i sum_j cos(v_i, v_j) = |sum_i u_i|^2, so avg_dist = (1 - |mean_i u_i|^2) / 2.
    0 means that every row points the same way, 1/2 that the rows are on average orthogonal.
    All-zero rows have no direction and are left out; NaN if every row is zero.
    """
    if vectors.dim() != 2:
        raise ValueError(f"average_cosine_distance: expected an (N, D) tensor, got shape {list(vectors.shape)}")
    v = vectors.detach().double()
    norms = v.norm(dim=1)
    nonzero = norms > 0
    if not bool(nonzero.any()):
        return float("nan")
    mean = (v[nonzero] / norms[nonzero, None]).mean(dim=0)
    return float((1 - mean.dot(mean)) / 2)
