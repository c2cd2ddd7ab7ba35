"""EfficientAT `mn04_as` (Schmid et al.), rebuilt in torch from ../shared/teachers/README.md.

Only its state_dict is public here, so the front end and the MobileNetV3 network are written out
below; module names mirror the checkpoint's keys so it loads with `strict=True`. Training-time
teacher only: nothing in the service imports torch or this file.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

SAMPLE_RATE = 32000
N_FFT = 1024
WIN_LENGTH = 800
HOP_LENGTH = 320
N_MELS = 128
FMIN, FMAX = 0.0, 15000.0
N_CLASSES = 527


def kaldi_mel_banks(
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> torch.Tensor:
    """(n_mels, n_fft/2 + 1) Kaldi triangles, as torchaudio's `get_mel_banks` makes them.

    Written out because no torchaudio build matches our torch; float32 steps as torchaudio takes
    them, and the Nyquist column zero, as EfficientAT pads it. vtln_warp 1.0 leaves VTLN unused.
    """

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    mel_low, mel_high = mel(fmin), mel(fmax)
    delta = (mel_high - mel_low) / (n_mels + 1)
    b = torch.arange(n_mels).unsqueeze(1)
    left = mel_low + b * delta
    centre = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    bin_mel = 1127.0 * (1.0 + (sample_rate / n_fft) * torch.arange(n_fft // 2) / 700.0).log()
    up = (bin_mel - left) / (centre - left)
    down = (right - bin_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return nn.functional.pad(banks, (0, 1))


class LogMel(nn.Module):
    """32 kHz waveform (batch, samples) -> EfficientAT's normalised log-mel (batch, 128, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN_LENGTH, periodic=False))
        self.register_buffer("mel_banks", kaldi_mel_banks())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, 1:] - 0.97 * waveform[:, :-1]  # pre-emphasis, one sample shorter
        spec = torch.stft(
            x,
            N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return (torch.log(self.mel_banks @ power + 1e-5) + 4.5) / 5.0


def _divisible(v: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never more than 10 % below `v` (MobileNet rule)."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def _conv(
    c_in: int, c_out: int, k: int, stride: int, groups: int, act: type | None
) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, eps=0.001),
    ]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class _SqueezeExcite(nn.Module):
    """Channel gates from the mean over frequency and time (ReLU bottleneck, sigmoid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, _divisible(channels // 4))
        self.fc2 = nn.Linear(_divisible(channels // 4), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class _SqueezeExciteBlock(nn.Module):
    """EfficientAT's 'concurrent' SE holding one channel SE; kept so the checkpoint keys match."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList([_SqueezeExcite(channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conc_se_layers[0](x)


class _InvertedResidual(nn.Module):
    def __init__(
        self, c_in: int, k: int, expanded: int, c_out: int, se: bool, hs: bool, stride: int
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(_conv(c_in, expanded, 1, 1, 1, act))
        layers.append(_conv(expanded, expanded, k, stride, expanded, act))
        if se:
            layers.append(_SqueezeExciteBlock(expanded))
        layers.append(_conv(expanded, c_out, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


# MobileNetV3-Large (Howard et al. 2019, table 1): in, kernel, expanded, out, SE, hard-swish, stride
_LARGE = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)


class MN04(nn.Module):
    """Log-mel (batch, 128, frames) -> (527 AudioSet logits, 384-d embedding) per input."""

    def __init__(self, width: float = 0.4) -> None:
        super().__init__()
        w = lambda c: _divisible(c * width)  # noqa: E731
        blocks = [
            _InvertedResidual(w(ci), k, w(ce), w(co), se, hs, s)
            for ci, k, ce, co, se, hs, s in _LARGE
        ]
        last_in = w(_LARGE[-1][3])
        self.features = nn.Sequential(
            _conv(1, w(_LARGE[0][0]), 3, 2, 1, nn.Hardswish),
            *blocks,
            _conv(last_in, 6 * last_in, 1, 1, 1, nn.Hardswish),
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(6 * last_in, 512),
            nn.Hardswish(),
            nn.Dropout(0.2),
            nn.Linear(512, N_CLASSES),
        )

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(logmel.unsqueeze(1))
        return self.classifier(x), x.mean(dim=(2, 3))


def load_mn04(path: Path) -> MN04:
    """The network with the published weights, in eval mode (BN statistics frozen, no dropout)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mn04 weights not found; pass --teachers DIR")
    model = MN04()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def onnx_session(model: MN04, threads: int = 1) -> ort.InferenceSession:
    """The network as an onnxruntime session: 2-3x faster than torch eager on one thread.

    Exported in memory and never written anywhere, so the weights stay in ../shared/teachers.
    """
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.zeros(2, N_MELS, 98),),
        buffer,
        input_names=["logmel"],
        output_names=["logits", "embedding"],
        dynamic_axes={"logmel": {0: "batch", 2: "frames"}},
        opset_version=17,
        dynamo=False,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
