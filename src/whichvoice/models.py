"""Registered networks: ``talk-cnn`` (the talk's CNN; ``seed`` is an alias of it, the name it had
first) and ``voicenet`` (the default embedding net).

Every registered builder returns a module whose ``forward`` gives class logits, shape
(batch, n_classes). Embedding models also expose ``embed(x)``: L2-normalised embeddings,
shape (batch, embedding_dim); their classification head is used only in training and for
closed-set identification of the training voices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    features: str  # the feature kind it is made for ("logmel", "seed-image")
    epochs: int  # default number of training epochs
    summary: str
    schedule: str = "cosine"  # learning-rate schedule: "cosine" decay or "constant"
    augment: bool = False  # training-time augmentation by default


_MODELS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}  # another accepted name -> the registered one
DEFAULT_MODEL = "voicenet"


def register_model(
    name: str,
    *,
    features: str,
    epochs: int,
    summary: str,
    schedule: str = "cosine",
    augment: bool = False,
    aliases: tuple[str, ...] = (),
) -> Callable:
    """Decorator: register a builder ``(input_shape, n_classes) -> nn.Module`` as ``name``
    (and as each of ``aliases``, e.g. a former name that runs on disk still record)."""

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = ModelSpec(name, build, features, epochs, summary, schedule, augment)
        _ALIASES.update(dict.fromkeys(aliases, name))
        return build

    return wrap


def model_names() -> list[str]:
    """Every name a model is accepted by: the registered ones and their aliases, sorted."""
    return sorted([*_MODELS, *_ALIASES])


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name`` (or the one ``name`` is an alias of); ValueError listing
    the valid names otherwise."""
    try:
        return _MODELS[_ALIASES.get(name, name)]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid models: {', '.join(model_names())}"
        ) from None


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return model_spec(name).build(tuple(input_shape), n_classes)


def mxnet_xavier_(module: nn.Module, magnitude: float = 2.24) -> None:
    """MXNet's ``Xavier(rnd_type="uniform", factor_type="avg", magnitude)`` on weights; zero
    biases: U(-s, s) with s = sqrt(magnitude / ((fan_in + fan_out) / 2))."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            scale = math.sqrt(magnitude / ((fan_in + fan_out) / 2))
            nn.init.uniform_(m.weight, -scale, scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SeedCNN(nn.Module):
    """The talk's network, layer for layer: Conv2D(32, 3x3, relu) -> Conv2D(32, 3x3, relu)
    -> MaxPool2D(2x2) -> Dropout(0.25) -> Dense(n_classes) (Gluon's Dense flattens)."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=3, padding=0),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, padding=0),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
        )
        flat = 32 * ((height - 4) // 2) * ((width - 4) // 2)
        self.output = nn.Linear(flat, n_classes)
        mxnet_xavier_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))


@register_model(
    "talk-cnn",
    features="seed-image",
    epochs=5,
    summary="the talk's CNN on spectrogram images (alias: seed)",
    schedule="constant",  # the talk trained with Adam at a fixed rate
    aliases=("seed",),
)
def _seed(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return SeedCNN(input_shape, n_classes)


class _ConvBlock(nn.Sequential):
    def __init__(
        self, cin: int, cout: int, kernel: int, *, stride: int = 1, dilation: int = 1
    ) -> None:
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv1d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm1d(cout),
            nn.ReLU(),
        )


class VoiceEmbedder(nn.Module):
    """A compact TDNN with statistics pooling: log-mel (batch, n_mels, frames) -> L2-normalised
    embedding (batch, dim). Dilated 1-D convolutions see ~0.3 s of context; mean and standard
    deviation over time make it length-independent."""

    def __init__(self, n_mels: int, channels: int = 128, dim: int = 128) -> None:
        super().__init__()
        self.frames = nn.Sequential(
            _ConvBlock(n_mels, channels, 5, stride=2),
            _ConvBlock(channels, channels, 3, dilation=2),
            _ConvBlock(channels, channels, 3, dilation=3),
            _ConvBlock(channels, 2 * channels, 1),
        )
        self.project = nn.Sequential(nn.Linear(4 * channels, dim), nn.BatchNorm1d(dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.frames(x)
        stats = torch.cat([h.mean(dim=2), h.std(dim=2)], dim=1)
        return F.normalize(self.project(stats), dim=1)


class CosineHead(nn.Module):
    """Logits = scale * cosine(embedding, class centre): trains the embedding for cosine scoring.

    With ``margin`` > 0 and the labels given (training), the target class's angle is widened
    by ``margin`` radians first: additive angular margin (ArcFace/AAM-softmax), which pulls
    each voice's embeddings together and pushes voices apart, so unseen voices separate too.
    """

    def __init__(self, dim: int, n_classes: int, scale: float = 16.0, margin: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin = margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # float32 even under bf16 autocast: there 1 - 1e-6 rounds to 1, where the gradient of
        # acos is infinite
        with torch.autocast(emb.device.type, enabled=False):
            return self._logits(emb.float(), labels)

    def _logits(self, emb: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        cos = F.linear(emb, F.normalize(self.weight.float(), dim=1))
        if labels is None or self.margin <= 0:
            return self.scale * cos
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = F.one_hot(labels, cos.shape[1]).bool()
        # past pi - margin, cos(theta + m) would rise again: fall back to a linear penalty
        widened = torch.where(
            theta + self.margin < math.pi,
            torch.cos(theta + self.margin),
            cos - self.margin * math.sin(self.margin),
        )
        return self.scale * torch.where(target, widened, cos)


class EmbeddingClassifier(nn.Module):
    """An embedder with its training head; ``embed`` is what identification and verification use."""

    def __init__(self, embedder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits; ``labels`` (training only) let a margin head apply its margin."""
        return self.head(self.embedder(x), labels)


class EmbeddingEnsemble(nn.Module):
    """Several embedding classifiers trained side by side from different initial weights, each
    with its own margin head and loss; the embedding is their L2-normalised concatenation, so a
    cosine score is the mean of the members' cosine scores.

    While training with labels, ``forward`` gives logits of shape (batch, classes, members),
    which ``F.cross_entropy`` takes against the labels repeated per member: the members' mean
    loss. Otherwise it gives the members' mean logits, (batch, classes)."""

    def __init__(self, members: list[EmbeddingClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat([m.embed(x) for m in self.members], dim=1), dim=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        logits = torch.stack([m(x, labels) for m in self.members], dim=2)
        return logits if self.training and labels is not None else logits.mean(dim=2)


@register_model(
    "voicenet",
    features="logmel",
    epochs=12,  # with augmentation it needs more than 6 (chosen on the dev sentences)
    summary="TDNN + statistics pooling, L2-normalised embedding (default)",
    augment=True,
)
def _voicenet(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    n_mels = input_shape[0]
    embedder = VoiceEmbedder(n_mels)
    return EmbeddingClassifier(embedder, CosineHead(embedder.dim, n_classes))


def _slim(channels: int) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        embedder = VoiceEmbedder(input_shape[0], channels=channels)
        return EmbeddingClassifier(embedder, CosineHead(embedder.dim, n_classes))

    return build


for _channels in (64, 48, 32):
    register_model(
        f"voicenet-{_channels}",
        features="logmel",
        epochs=12,
        summary=f"voicenet with {_channels} channels instead of 128: a cheaper classifier",
        augment=True,
    )(_slim(_channels))


@register_model(
    "voicenet-aam",
    features="logmel",
    epochs=12,
    summary="voicenet trained with an additive angular margin: a voice encoder for verification",
    augment=True,
)
def _voicenet_aam(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    embedder = VoiceEmbedder(input_shape[0])
    return EmbeddingClassifier(
        embedder, CosineHead(embedder.dim, n_classes, scale=30.0, margin=0.2)
    )


@register_model(
    "voicenet-aam-wide",
    features="logmel",
    epochs=50,
    summary="voicenet-aam with twice the channels (256): a larger voice encoder",
    augment=True,
)
def _voicenet_aam_wide(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    embedder = VoiceEmbedder(input_shape[0], channels=256)
    return EmbeddingClassifier(
        embedder, CosineHead(embedder.dim, n_classes, scale=30.0, margin=0.2)
    )


@register_model(
    "voicenet-aam-wide-x2",
    features="logmel",
    epochs=50,
    summary="two voicenet-aam-wide encoders trained side by side: scores are their mean",
    augment=True,
)
def _voicenet_aam_wide_x2(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return EmbeddingEnsemble([_voicenet_aam_wide(input_shape, n_classes) for _ in range(2)])
