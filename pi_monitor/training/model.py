"""CryNet: a depthwise-separable CNN over one ~1 s log-mel window, sized for a Pi core.

The window's mean log energy is subtracted first, so overall gain (distance to the baby,
microphone sensitivity) cannot be a cue. Pooling is over time only; frequency position is kept
because a cry's pitch band is part of what makes it a cry. `macs()` counts multiply-adds.
"""

from __future__ import annotations

import torch
from torch import nn


def _separable(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class CryNet(nn.Module):
    """(batch, frames, n_mels) log-mel -> (batch,) cry logit, divided by a fitted temperature."""

    def __init__(self, frames: int, n_mels: int, widths: tuple[int, ...] = (24, 32, 48, 64)):
        super().__init__()
        first, *rest = widths
        layers: list[nn.Module] = [
            nn.Conv2d(1, first, 3, padding=1, bias=False),
            nn.BatchNorm2d(first),
            nn.ReLU(),
        ]
        c = first
        for w in rest:
            layers += [nn.MaxPool2d(2), _separable(c, w)]
            c = w
        self.body = nn.Sequential(*layers)
        self.input_norm = nn.BatchNorm2d(1)
        with torch.no_grad():
            reduced = self.body(torch.zeros(1, 1, frames, n_mels))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(2 * reduced.shape[1] * reduced.shape[3], 1)
        self.register_buffer("temperature", torch.ones(()))
        self.frames, self.n_mels = frames, n_mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=(1, 2), keepdim=True)
        h = self.body(self.input_norm(x.unsqueeze(1)))
        pooled = torch.cat((h.mean(dim=2), h.amax(dim=2)), dim=1).flatten(1)
        return self.head(self.dropout(pooled)).squeeze(1) / self.temperature


def macs(model: CryNet) -> int:
    """Multiply-adds of one window through convolutions and the head (BN folds into convs)."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * k * module.in_channels // module.groups
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, model.frames, model.n_mels))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
