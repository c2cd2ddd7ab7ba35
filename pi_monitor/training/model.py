"""CryNet: a CNN that is convolutional in time, so a long run of frames is computed once.

Every convolution is 'valid' in time (no padding) and the time strides multiply to the model's
hop, so the logit at position j depends on exactly frames [j*hop, j*hop + receptive field): one
window, the same whatever else the run holds. Live, the service passes one window; in replay it
passes seconds of frames and each frame goes through the network once instead of once per
overlapping window (4.4 windows overlap each frame). Frequency is padded and strided; its
position is kept to the end, where one layer reads the remaining bands, because a cry's pitch
band is part of what makes it a cry.

During training a second head predicts the AudioSet teacher's 527 class probabilities from the
same embedding: it makes the student tell songs, meows and music boxes apart as the teacher
does. Where the recipe asks, one more 1x1 head per teacher learns to point the way that
teacher's embedding points, so the student inherits the teachers' whole geometry, not only 527
mostly-zero probabilities. Only the cry logit is exported.
"""

from __future__ import annotations

import torch
from torch import nn

AUDIOSET_CLASSES = 527
TIME_LAYOUT = ((1, 2), (2, 2), (1, 1), (2, 2), (1, 1), (3, 2), (1, 1))  # (time, freq) strides
Layout = tuple[tuple[int, int], ...]


def layout(layers: int) -> Layout:
    """The (time, freq) strides of `layers` convolutions: TIME_LAYOUT, then unstrided layers at
    the full 12-frame jump, each widening the window by 24 frames (0.48 s) at the same hop."""
    if layers < len(TIME_LAYOUT):
        raise ValueError(f"widths needs at least {len(TIME_LAYOUT)} entries, one per layer")
    return TIME_LAYOUT + ((1, 1),) * (layers - len(TIME_LAYOUT))


def receptive_field(strides: Layout = TIME_LAYOUT) -> tuple[int, int]:
    """(frames one logit sees, frames between logits) for 3-frame kernels with these strides."""
    field, jump = 1, 1
    for time_stride, _ in strides:
        field += 2 * jump
        jump *= time_stride
    return field, jump


def layers_for(frames: int) -> int:
    """How many convolutions make a window of `frames` frames (53, 77, 101, ...)."""
    base, hop = receptive_field()
    extra, rest = divmod(frames - base, 2 * hop)
    if extra < 0 or rest:
        raise ValueError(f"a window of {frames} frames is not {base} plus a multiple of {2 * hop}")
    return len(TIME_LAYOUT) + extra


class _Block(nn.Module):
    """3x3 convolution, valid in time; residual (time-cropped) when the shape allows."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, (0, 1), bias=False)
        self.norm = nn.BatchNorm2d(c_out)
        self.residual = stride == (1, 1) and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        if self.residual:
            y = y + x[:, :, 1:-1]
        return torch.relu(y)


class CryNet(nn.Module):
    """(batch, frames, n_mels) log-mel -> (batch, positions) cry logits / fitted temperature."""

    def __init__(
        self,
        n_mels: int,
        widths: tuple[int, ...] = (16, 32, 32, 64, 64, 96, 96),
        embedding: int = 128,
        teacher_embeddings: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        strides = layout(len(widths))
        self.input_norm = nn.BatchNorm2d(1)
        blocks, c, bands = [], 1, n_mels
        for width, stride in zip(widths, strides, strict=True):
            blocks.append(_Block(c, width, stride))
            c, bands = width, (bands - 1) // stride[1] + 1
        self.body = nn.Sequential(*blocks)
        self.embed = nn.Sequential(
            nn.Conv2d(c, embedding, (1, bands), bias=False), nn.BatchNorm2d(embedding), nn.ReLU()
        )
        self.dropout = nn.Dropout(0.2)
        self.cry = nn.Conv2d(embedding, 1, 1)
        self.audioset = nn.Conv2d(embedding, AUDIOSET_CLASSES, 1)
        self.teachers = nn.ModuleList(nn.Conv2d(embedding, d, 1) for d in teacher_embeddings)
        self.register_buffer("temperature", torch.ones(()))
        self.n_mels = n_mels
        self.window_frames, self.hop_frames = receptive_field(strides)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, embedding, positions)."""
        return self.embed(self.body(self.input_norm(x.unsqueeze(1)))).squeeze(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.embedding(x)).unsqueeze(3)
        return self.cry(h)[:, 0, :, 0] / self.temperature

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training: cry logits (batch, positions), AudioSet logits (batch, 527, positions) and
        each teacher head's (batch, its embedding width, positions)."""
        h = self.dropout(self.embedding(x)).unsqueeze(3)
        teachers = [head(h)[:, :, :, 0] for head in self.teachers]
        return self.cry(h)[:, 0, :, 0] / self.temperature, self.audioset(h)[:, :, :, 0], teachers


def macs(model: CryNet, frames: int | None = None) -> int:
    """Multiply-adds of the exported path (BN folds into convs) for a run of `frames` frames."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d) and module is not model.audioset:
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * k * module.in_channels // module.groups

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, frames or model.window_frames, model.n_mels))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
