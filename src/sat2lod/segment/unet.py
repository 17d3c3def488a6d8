"""A compact U-Net (own module, no pretrained weights: nothing is downloaded, the model trains in minutes on CPU).

Why not segmentation-models-pytorch: its encoders are sized for ImageNet transfer (ResNet-34: 21 M parameters);
without a pretrained download that capacity is wasted, and the demo must train in ~3 minutes on 2 cores. The
input here is 3 channels of simple, normalized evidence (ortho, nDSM, nDSM-valid flag), for which a 4-level
U-Net with 16 base channels (~0.47 M parameters) is enough.
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net: ``depth`` poolings, channels ``base * 2**level``; logits out.

    Args:
        in_channels: input channels C.
        base: channels of the first level.
        depth: number of 2x poolings; inputs must have H and W divisible by ``2**depth``.
    Shapes:
        forward: (B, C, H, W) float -> (B, 1, H, W) logits (apply a sigmoid for the building probability).
    """

    def __init__(self, in_channels: int = 3, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.in_channels, self.base, self.depth = in_channels, base, depth
        ch = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_Block(in_channels, ch[0])] + [_Block(ch[i], ch[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(depth)])
        self.dec = nn.ModuleList([_Block(2 * ch[i], ch[i]) for i in range(depth)])
        self.head = nn.Conv2d(ch[0], 1, 1)
        self.pool = nn.MaxPool2d(2)

    @property
    def multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = self.dec[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)
