"""IR-ResNet-18 and IR-ResNet-50: the "improved residual" face ResNets used by ArcFace/InsightFace.

Both Domain Balancing experiments use "ResNet18 and ResNet50 ... [that] finally produce a
512-dimension feature" (DB paper, Sec. 4.2). In face recognition these are the IR-ResNets of
Deng et al. (ArcFace, CVPR 2019), built as follows:

- stem: 3x3 conv (stride 1) to 64 channels, BatchNorm, PReLU;
- four stages of improved residual units with widths 64 / 128 / 256 / 512 and
  [2, 2, 2, 2] (IR-18) or [3, 4, 14, 3] (IR-50) units; the first unit of every stage halves
  the resolution;
- an improved residual unit is ``BN - Conv3x3 - BN - PReLU - Conv3x3(stride) - BN`` on the
  main path, and ``Conv1x1(stride) - BN`` on the shortcut when the shape changes;
- the embedding head ``BN2d - Dropout - Flatten - FC - BN1d``: for 112 x 112 input the last
  stage is 7 x 7 x 512, so the FC has 25,088 inputs.

Any square input whose side is divisible by 16 works; the FC input is computed from
``image_size``. With a 512-D embedding at 112 px, IR-50 has 43,590,848 parameters and
IR-18 has 24,025,600: the "43.6M" usually quoted for InsightFace's ``iresnet50``, whose layers
are the same (its last BN1d keeps gamma frozen at 1; here it is learnable, which changes no count).
By hand for IR-50: stem 1,920; stages 226,752 + 1,117,824 + 16,278,272 + 13,118,464;
head 1,024 + (25,088 x 512 + 512) + 1,024.
"""

from __future__ import annotations

import torch
from torch import nn


def _check_image_size(image_size: int, factor: int, name: str) -> None:
    if not isinstance(image_size, int) or image_size <= 0 or image_size % factor:
        raise ValueError(f"{name}: image_size must be a positive multiple of {factor}, got {image_size!r}")


class ImprovedResidualUnit(nn.Module):
    """``BN - Conv3x3 - BN - PReLU - Conv3x3(stride) - BN`` plus a (projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class IResNet(nn.Module):
    """An IR-ResNet face embedding network: uint8-normalised images (B, 3, S, S) -> (B, D).

    Parameters
    ----------
    units_per_stage
        Number of improved residual units in each of the four stages, e.g. ``(3, 4, 14, 3)``.
    embedding_size
        Dimension D of the output embedding (512 in both papers).
    image_size
        Side S of the square input; must be divisible by 16 (four stride-2 stages).
    dropout
        Dropout probability before the FC (InsightFace's default is 0).
    widths
        Channels of the four stages (the stem has the first stage's).
    """

    def __init__(
        self,
        units_per_stage: tuple[int, int, int, int],
        embedding_size: int = 512,
        image_size: int = 112,
        dropout: float = 0.0,
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        _check_image_size(image_size, 16, "IResNet")
        if len(units_per_stage) != 4 or len(widths) != 4:
            raise ValueError(
                f"IResNet: expected 4 stages, got units_per_stage={units_per_stage} widths={widths}"
            )
        if embedding_size <= 0:
            raise ValueError(f"IResNet: embedding_size must be positive, got {embedding_size}")
        self.embedding_size = int(embedding_size)
        self.image_size = int(image_size)

        stem = widths[0]  # 64 in InsightFace's IR-ResNets, as wide as the first stage
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.PReLU(stem),
        )
        stages = []
        in_channels = stem
        for units, width in zip(units_per_stage, widths):
            blocks = [ImprovedResidualUnit(in_channels, width, stride=2)]
            blocks += [ImprovedResidualUnit(width, width) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.stages = nn.Sequential(*stages)

        side = image_size // 16
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(in_channels * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def iresnet18(embedding_size: int = 512, image_size: int = 112, dropout: float = 0.0,
              widths: tuple[int, int, int, int] = (64, 128, 256, 512)) -> IResNet:
    """IR-ResNet-18: stages [2, 2, 2, 2] (``widths``: narrower stages, e.g. for the CPU rehearsal)."""
    return IResNet((2, 2, 2, 2), embedding_size=embedding_size, image_size=image_size, dropout=dropout,
                   widths=tuple(widths))


def iresnet50(embedding_size: int = 512, image_size: int = 112, dropout: float = 0.0,
              widths: tuple[int, int, int, int] = (64, 128, 256, 512)) -> IResNet:
    """IR-ResNet-50: stages [3, 4, 14, 3] (``widths``: narrower stages, e.g. for the CPU rehearsal)."""
    return IResNet((3, 4, 14, 3), embedding_size=embedding_size, image_size=image_size, dropout=dropout,
                   widths=tuple(widths))
