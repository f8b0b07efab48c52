"""A one-hidden-layer MLP teacher on standardised features, trained with torch on the CPU.

The input is first projected on the leading principal components of its training features
(whitened): with a few hundred to a few thousand train images the features span at most that many
directions, so the projection keeps what the data can teach while the hidden layer's cost no
longer grows with the concatenated width. Weight decay and the number of epochs (early stopping)
are chosen on the same stratified folds as every other teacher candidate (teachers.choose). Once
trained, the network is plain numpy (standardisation and projection folded into the first layer),
so scoring the corpus needs no torch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from builder.errors import BuilderError
from builder.features.stream import row_chunks
from builder.pipeline.teacher import balanced_accuracy


@dataclass(frozen=True)
class MlpConfig:
    hidden: int = 256
    max_components: int = 256  # projection width (compute bound, not a tuned constant)
    weight_decays: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    max_epochs: int = 60
    eval_every: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    dropout: float = 0.25
    class_balanced: bool = True
    seed: int = 0


@dataclass(frozen=True)
class MlpTeacher:
    w1: np.ndarray  # (D, H) float32: standardisation and projection folded in
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, C)
    b2: np.ndarray  # (C,)
    weight_decay: float
    epochs: int

    @property
    def kind(self) -> str:
        return "mlp"

    @property
    def l2(self) -> float:
        return self.weight_decay

    @property
    def num_classes(self) -> int:
        return int(self.b2.shape[0])

    def logits(self, features: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
        out = np.empty((features.shape[0], self.num_classes), dtype=np.float32)
        for start, chunk in row_chunks(features, batch_size):  # pages released as it goes
            hidden = np.maximum(chunk @ self.w1 + self.b1, 0.0)
            out[start : start + batch_size] = hidden @ self.w2 + self.b2
        return out

    def predict(self, features: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.argmax(self.logits(features), axis=1).astype(np.int64)
        return out


@dataclass(frozen=True)
class _Input:
    """The affine map features -> whitened components, fitted on training rows."""

    mean: np.ndarray  # (D,)
    proj: np.ndarray  # (D, K): standardisation, rotation and whitening in one matrix

    @classmethod
    def fit(cls, x: np.ndarray, max_components: int) -> _Input:
        x64 = np.asarray(x, dtype=np.float64)
        mean = x64.mean(axis=0)
        scale = 1.0 / np.maximum(x64.std(axis=0), 1e-6)
        z = (x64 - mean) * scale
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        k = min(max_components, int(np.count_nonzero(s > s[0] * 1e-6)))
        whiten = np.sqrt(max(len(z) - 1, 1)) / s[:k]
        proj = (scale[:, None] * vt[:k].T * whiten[None, :]).astype(np.float32)
        return cls(mean.astype(np.float32), proj)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = (np.asarray(x, dtype=np.float32) - self.mean) @ self.proj
        return out


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """One thread: on a loaded 2-core machine torch's own pool spins like OpenBLAS's (build.py's
    single_blas)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _class_weights(labels: np.ndarray, num_classes: int, balanced: bool) -> np.ndarray:
    if not balanced:
        return np.ones(num_classes, dtype=np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    out: np.ndarray = np.where(
        counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0
    ).astype(np.float32)
    return out


def train_mlp(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    weight_decay: float,
    epochs: int,
    config: MlpConfig,
    evaluate: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[MlpTeacher, list[float]]:
    """Train for `epochs` epochs; with `evaluate` (features, labels), the balanced accuracy on
    them after every config.eval_every epochs (the early-stopping curve)."""
    import torch

    if x.shape[0] != labels.shape[0] or x.shape[0] < 2:
        raise BuilderError(f"MLP teacher: {x.shape[0]} feature rows for {labels.shape[0]} labels")
    transform = _Input.fit(x, config.max_components)
    curve: list[float] = []
    # Dropout draws from torch's global generator: a forked, seeded one makes the teacher depend on
    # its data and config alone (not on what ran before in the process) and leaves the caller's
    # global state as it was.
    with _torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        xt = torch.from_numpy(transform(x))
        yt = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        k = xt.shape[1]
        layer1 = torch.nn.Linear(k, config.hidden)
        layer2 = torch.nn.Linear(config.hidden, num_classes)
        for layer in (layer1, layer2):  # seeded init: the same data trains the same teacher
            bound = 1.0 / float(np.sqrt(layer.in_features))
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.zero_()
        net = torch.nn.Sequential(layer1, torch.nn.ReLU(), torch.nn.Dropout(config.dropout), layer2)
        weights = torch.from_numpy(_class_weights(labels, num_classes, config.class_balanced))
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        opt = torch.optim.AdamW(
            net.parameters(), lr=config.learning_rate, weight_decay=weight_decay
        )
        x_eval = None if evaluate is None else torch.from_numpy(transform(evaluate[0]))
        for epoch in range(1, epochs + 1):
            net.train()
            order = torch.randperm(xt.shape[0], generator=gen)
            for start in range(0, xt.shape[0], config.batch_size):
                batch = order[start : start + config.batch_size]
                opt.zero_grad()
                loss_fn(net(xt[batch]), yt[batch]).backward()
                opt.step()
            if evaluate is not None and x_eval is not None and epoch % config.eval_every == 0:
                net.eval()
                with torch.no_grad():
                    pred = net(x_eval).argmax(dim=1).numpy()
                curve.append(balanced_accuracy(pred, evaluate[1]))
        w1 = layer1.weight.detach().numpy().T  # (K, H)
        model = MlpTeacher(
            w1=(transform.proj @ w1).astype(np.float32),
            b1=(layer1.bias.detach().numpy() - (transform.mean @ transform.proj) @ w1).astype(
                np.float32
            ),
            w2=layer2.weight.detach().numpy().T.astype(np.float32).copy(),
            b2=layer2.bias.detach().numpy().astype(np.float32).copy(),
            weight_decay=weight_decay,
            epochs=epochs,
        )
    return model, curve
