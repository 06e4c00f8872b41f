"""A small, fast face CNN for the smoke and cpu profiles (24-48 px inputs on a laptop CPU).

Shape (widths ``w0, w1, w2``)::

    stem    conv3x3 stride 2 (3 -> w0) - BN - ReLU                       S   -> S/2
    stage 1 conv3x3 (w0 -> w1) - BN - ReLU - [conv3x3 - BN] (+) - ReLU - maxpool2   -> S/4
    stage 2 conv3x3 (w1 -> w2) - BN - ReLU - [conv3x3 - BN] (+) - ReLU - maxpool2   -> S/8
    head    Flatten - Linear(w2 * (S/8)^2 -> D) - BatchNorm1d            -> embedding

``(+)`` is an identity shortcut around the second conv of each stage (``residual=True``,
the default): an element-wise add, cheap next to the convs, without which the short cpu schedule
trains far worse features. The input side must be divisible by 8.

The network keeps its conv weights and activations in ``channels_last`` memory format, which
oneDNN's CPU convolutions run faster; results are the same up to float rounding.
``benchmarks/bench_train.py`` measures its img/s (the README's benchmarks table).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class SmallStage(nn.Module):
    """``conv-BN-ReLU``, then ``conv-BN`` (+ identity when ``residual``) ``-ReLU``, then 2x2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn(in_channels, out_channels)
        self.conv2 = _conv_bn(out_channels, out_channels)
        self.residual = residual
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        y = self.conv2(x)
        if self.residual:
            y = y + x
        return self.pool(self.act(y))


class SmallFaceNet(nn.Module):
    """A three-conv-block CNN: images (B, 3, S, S), S divisible by 8 -> embeddings (B, D).

    Parameters
    ----------
    embedding_size
        Dimension D of the embedding.
    image_size
        Side S of the square input (24, 32, 40 or 48 in the cpu profiles).
    width
        Channels ``(w0, w1, w2)`` of the stem and the two stages.
    residual
        Identity shortcut around each stage's second conv.
    dropout
        Dropout probability before the final Linear (0 by default).
    """

    def __init__(
        self,
        embedding_size: int = 128,
        image_size: int = 32,
        width: tuple[int, int, int] = (16, 32, 64),
        residual: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size <= 0 or image_size % 8:
            raise ValueError(f"SmallFaceNet: image_size must be a positive multiple of 8, got {image_size!r}")
        if len(width) != 3 or min(width) <= 0:
            raise ValueError(f"SmallFaceNet: width must be three positive channel counts, got {width}")
        if embedding_size <= 0:
            raise ValueError(f"SmallFaceNet: embedding_size must be positive, got {embedding_size}")
        w0, w1, w2 = width
        self.embedding_size = int(embedding_size)
        self.image_size = int(image_size)
        self.stem = nn.Sequential(_conv_bn(3, w0, stride=2), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(SmallStage(w0, w1, residual), SmallStage(w1, w2, residual))
        side = image_size // 8
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(w2 * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.stages(self.stem(x)))
