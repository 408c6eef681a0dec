"""Spectral-cluster substitution: each output is replaced by a real training image of its cluster.

Label-free. The training outputs are projected on their first ``PCA_DIMS`` principal components;
a k-nearest-neighbour graph of those features is embedded spectrally (``EMBED_DIMS`` dimensions,
rows scaled to unit length) and cut into ``n_prototypes`` clusters by k-means. A new output is
projected the same way and takes the majority cluster of its ``NEIGHBOURS`` nearest training
features. Each cluster keeps a *central pool*: the *original* training images of its
``pool_size`` members nearest the k-means centre in the embedding (with ``pool_size=1``, the
medoid alone). An output is released as a member of its cluster's pool drawn by a random
generator seeded with ``seed`` alone: the i-th image of a :meth:`transform` call takes the i-th
draw, whatever the image shows. Every released image is a real, neat digit rather than a blurred
average, and with a pool the release is as varied as ``n_prototypes * pool_size`` training images.

Why the attacker still learns only the cluster index: the released image is ``pool[c][u]`` where
``c`` is the cluster and ``u`` a draw that does not depend on the input, so given ``c`` the image
is independent of the private label; and ``c`` can be read back from the image (the pools of two
clusters share no training image). No attacker can therefore read more about the private label
than the cluster index tells: its best accuracy is the per-cluster majority.
The spectral embedding follows the graph's connected shapes (a digit's strokes bent by many
writers) where k-means on pixels cuts them by style; measured in ``docs/anonymizer.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgprivacy.anonymizer.substitution.base import SubstitutionMethod, to_uint8
from imgprivacy.errors import InvalidInputError
from imgprivacy.safetensors_io import tensor_problems

if TYPE_CHECKING:
    from imgprivacy.anonymizer.config import AnonymizerConfig

PCA_DIMS = 50  # principal components the graph is built on
EMBED_DIMS = 10  # dimensions of the spectral embedding
NEIGHBOURS = 10  # neighbours of the graph and of the assignment vote

MEAN_KEY = "cluster_pca_mean"  # (D,) mean of the training outputs
COMPONENTS_KEY = "cluster_pca_components"  # (p, D) principal axes
FEATURES_KEY = "cluster_train_features"  # (N, p) the training outputs' projections
LABELS_KEY = "cluster_train_labels"  # (N,) their clusters, stored as float32 integers
PROTOTYPES_KEY = "cluster_prototypes"  # (n_prototypes, D) each cluster's medoid image
POOL_KEY = "cluster_pool"  # (n_prototypes, pool_size, D) each cluster's central images, nearest
# the centre first; stored only when pool_size > 1 (the medoids are the pool's first column)


def nearest_vote(
    features: torch.Tensor,
    *,
    reference: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    neighbours: int = NEIGHBOURS,
    chunk: int = 1024,
) -> torch.Tensor:
    """The majority label among each row's ``neighbours`` nearest ``reference`` rows (ties: the
    lowest label), computed with exact distances so the result does not depend on ``chunk``.

    Examples
    --------
    >>> ref = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    >>> nearest_vote(torch.tensor([[0.05], [4.9]]), reference=ref,
    ...              labels=torch.tensor([0, 0, 1, 1]), n_classes=2, neighbours=2).tolist()
    [0, 1]
    """
    k = min(neighbours, len(reference))
    out = []
    for start in range(0, len(features), chunk):
        part = features[start : start + chunk]
        distances = torch.cdist(part, reference, compute_mode="donot_use_mm_for_euclid_dist")
        index = distances.topk(k, dim=1, largest=False).indices
        votes = torch.nn.functional.one_hot(labels[index], n_classes).sum(dim=1)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def spectral_clusters(
    features: np.ndarray, *, n_clusters: int, seed: int = 0, pool_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster (N, p) features on their k-NN graph.

    Returns (labels (N,), central (k, pool_size)): ``central[c]`` indexes the ``pool_size``
    members of cluster ``c`` nearest its k-means centre in the embedding, nearest first (the
    medoid is ``central[c, 0]``); a cluster with fewer members repeats them in that order.
    """
    from sklearn.cluster import KMeans
    from sklearn.manifold import SpectralEmbedding

    embedding = SpectralEmbedding(
        n_components=EMBED_DIMS,
        affinity="nearest_neighbors",
        n_neighbors=NEIGHBOURS,
        random_state=seed,
    ).fit_transform(features)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True).clip(min=1e-12)
    kmeans = KMeans(n_clusters, n_init=4, random_state=seed).fit(embedding)
    labels = kmeans.labels_.astype(np.int64)
    central = np.zeros((n_clusters, pool_size), dtype=np.int64)
    for cluster in range(n_clusters):
        members = np.flatnonzero(labels == cluster)
        if len(members):
            gaps = np.linalg.norm(embedding[members] - kmeans.cluster_centers_[cluster], axis=1)
            nearest = members[np.argsort(gaps, kind="stable")[:pool_size]]
            central[cluster] = np.resize(nearest, pool_size)
    return labels, central


class SpectralClusterSubstitution(SubstitutionMethod):
    """A central training image of the output's spectral cluster (``"spectral-clusters"``).

    Parameters
    ----------
    n_prototypes
        Number of clusters.
    seed
        Seeds the embedding, k-means and the draws from the pools.
    pool_size
        Central training images per cluster that a released image is drawn from; 1 releases
        each cluster's medoid (``n_prototypes`` distinct images in all).

    Attributes
    ----------
    mean_, components_ : torch.Tensor
        (D,) and (p, D): the projection of outputs onto the features the clusters live in.
    features_ : torch.Tensor
        (N, p) the training outputs' features.
    labels_ : torch.Tensor
        (N,) int64 their clusters.
    pool_ : torch.Tensor
        (n_prototypes, pool_size, D) float in [0, 1]: each cluster's central training images,
        nearest the centre first.
    prototypes_ : torch.Tensor
        (n_prototypes, D): each cluster's medoid image (``pool_[:, 0]``).
    """

    name = "spectral-clusters"
    # POOL_KEY joins these only when pool_size > 1, which only WarpGameConfig can ask for
    tensor_names = (MEAN_KEY, COMPONENTS_KEY, FEATURES_KEY, LABELS_KEY, PROTOTYPES_KEY)

    def __init__(self, *, n_prototypes: int, seed: int = 0, pool_size: int = 1):
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
            raise InvalidInputError(f"pool_size must be a positive integer, got {pool_size!r}.")
        self.n_prototypes = n_prototypes
        self.seed = seed
        self.pool_size = pool_size

    @classmethod
    def config_problems(cls, config: AnonymizerConfig) -> list[str]:
        if isinstance(config.n_prototypes, int) and config.n_prototypes < 2:
            return [
                f"n_prototypes must be >= 2 with substitution='spectral-clusters', got "
                f"{config.n_prototypes}"
            ]
        return []

    @classmethod
    def from_config(cls, config: AnonymizerConfig) -> SpectralClusterSubstitution:
        # the paper's AnonymizerConfig has no pool: it releases medoids
        return cls(
            n_prototypes=config.n_prototypes,
            seed=config.seed,
            pool_size=getattr(config, "pool_size", 1),
        )

    def fit(
        self,
        images: torch.Tensor,
        private_labels: np.ndarray,
        *,
        autoencode: Callable[[torch.Tensor], torch.Tensor],
    ) -> SpectralClusterSubstitution:
        """Cluster the outputs of the training ``images``; keep each cluster's central originals."""
        del private_labels  # label-free by design
        outputs = autoencode(images).detach().float().cpu()
        if len(outputs) < max(self.n_prototypes, NEIGHBOURS + 1):
            raise InvalidInputError(
                f"Expected at least {max(self.n_prototypes, NEIGHBOURS + 1)} training images to "
                f"cluster into n_prototypes={self.n_prototypes}, got {len(outputs)}."
            )
        self.mean_ = outputs.mean(dim=0)
        dims = min(PCA_DIMS, outputs.shape[1], len(outputs) - 1)
        _, _, vt = torch.linalg.svd(outputs - self.mean_, full_matrices=False)
        self.components_ = vt[:dims].contiguous()
        self.features_ = self._project(outputs)
        labels, central = spectral_clusters(
            self.features_.double().numpy(),
            n_clusters=self.n_prototypes,
            seed=self.seed,
            pool_size=self.pool_size,
        )
        self.labels_ = torch.as_tensor(labels)
        pixels = images.detach().float().cpu().clamp(0, 1)
        self.pool_ = pixels[torch.as_tensor(central)].contiguous()
        self.prototypes_ = self.pool_[:, 0].contiguous()
        return self

    def _project(self, outputs: torch.Tensor) -> torch.Tensor:
        return (outputs.float() - self.mean_) @ self.components_.T

    def assign(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, D) outputs -> (N,) int64 cluster indices."""
        self._check_fitted("features_", "labels_", "prototypes_")
        with torch.inference_mode():
            return nearest_vote(
                self._project(outputs.detach().cpu()),
                reference=self.features_,
                labels=self.labels_,
                n_classes=self.n_prototypes,
            )

    def draws(self, n: int) -> torch.Tensor:
        """(n,) int64 pool positions of the images of a :meth:`transform` call of ``n`` images:
        a function of ``seed`` and of the position in the call alone, never of the pixels."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randint(self.pool_size, (n,), generator=generator)

    def transform(self, outputs: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
        """(N, D) outputs -> (N, D) uint8: the i-th output's cluster's pool member at the i-th draw."""
        ids = self.assign(outputs)
        if self.pool_size == 1:
            return to_uint8(self.prototypes_[ids])
        return to_uint8(self.pool_[ids, self.draws(len(ids))])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._check_fitted("features_", "labels_", "prototypes_")
        tensors = {
            MEAN_KEY: self.mean_,
            COMPONENTS_KEY: self.components_,
            FEATURES_KEY: self.features_.contiguous(),
            LABELS_KEY: self.labels_.float(),
            PROTOTYPES_KEY: self.prototypes_,
        }
        if self.pool_size > 1:
            tensors[POOL_KEY] = self.pool_
        return tensors, {}

    @classmethod
    def state_problems(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> list[str]:
        d = config.input_dim
        components = tensors.get(COMPONENTS_KEY)
        features = tensors.get(FEATURES_KEY)
        p = components.shape[0] if components is not None and components.dim() == 2 else 0
        n = features.shape[0] if features is not None and features.dim() == 2 else 0
        expected = {
            MEAN_KEY: (d,),
            COMPONENTS_KEY: (p, d),
            FEATURES_KEY: (n, p),
            LABELS_KEY: (n,),
            PROTOTYPES_KEY: (config.n_prototypes, d),
        }
        pool_size = getattr(config, "pool_size", 1)
        if pool_size > 1:
            expected[POOL_KEY] = (config.n_prototypes, pool_size, d)
        problems = tensor_problems(tensors, expected)
        labels = tensors.get(LABELS_KEY)
        if not problems and labels is not None and len(labels):
            bad = (labels != labels.round()) | (labels < 0) | (labels >= config.n_prototypes)
            if bool(bad.any()):
                problems.append(
                    f"{LABELS_KEY} must hold integers in [0, {config.n_prototypes}), "
                    f"got {int(bad.sum())} other values"
                )
        return problems

    @classmethod
    def _restore(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> SpectralClusterSubstitution:
        method = cls.from_config(config)
        method.mean_ = tensors[MEAN_KEY].cpu()
        method.components_ = tensors[COMPONENTS_KEY].cpu()
        method.features_ = tensors[FEATURES_KEY].cpu()
        method.labels_ = tensors[LABELS_KEY].cpu().long()
        method.prototypes_ = tensors[PROTOTYPES_KEY].cpu()
        pool = tensors.get(POOL_KEY)
        method.pool_ = method.prototypes_[:, None] if pool is None else pool.cpu()
        return method
