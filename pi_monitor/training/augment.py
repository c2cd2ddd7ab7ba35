"""Augmentation: what a nursery microphone adds that the corpus lacks.

Generated stationary noise of random colour with slow modulation stands in for white-noise
machines and fans; generated room impulse responses for reverberation; random low- and
high-pass filters on both classes so bandwidth says nothing about the label; mixtures at a
chosen signal-to-noise ratio. All functions are pure: a seeded `numpy.random.Generator` in,
samples out.
"""

from __future__ import annotations

import numpy as np
import scipy.signal


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def active_rms(x: np.ndarray, frame: int = 160) -> float:
    """RMS over the loudest half of frames: the level of a sound, not of its pauses."""
    n = len(x) // frame
    if n < 2:
        return rms(x)
    energy = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    loud = np.sort(energy)[n // 2 :]
    return float(np.sqrt(loud.mean() + 1e-20))


def coloured_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Stationary noise with a random spectral slope, a few resonances and slow modulation.

    Slope from brown (-2) to blue (+1) covers white-noise machines, fans, hair dryers and
    hiss; resonant peaks add motor hum; a 0.05-2 Hz amplitude modulation makes fans and waves.
    """
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    f = np.maximum(freqs, 20.0)
    shape = (f / 1000.0) ** (rng.uniform(-2.0, 1.0) / 2)
    for _ in range(rng.integers(0, 4)):
        centre = rng.uniform(50, sample_rate / 2 * 0.9)
        width = centre * rng.uniform(0.02, 0.3)
        shape = shape * (1 + rng.uniform(1, 20) * np.exp(-0.5 * ((freqs - centre) / width) ** 2))
    noise = np.fft.irfft(spectrum * shape, n)
    if rng.random() < 0.7:
        t = np.arange(n) / sample_rate
        rate, depth = rng.uniform(0.05, 2.0), rng.uniform(0.0, 0.6)
        noise *= 1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return (noise / rms(noise)).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Exponentially decaying noise tail after a direct path; RT60 0.1-0.8 s, random damping."""
    rt60 = rng.uniform(0.1, 0.8)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    sos = scipy.signal.butter(
        2, rng.uniform(1500, sample_rate / 2 * 0.95), fs=sample_rate, output="sos"
    )
    tail = scipy.signal.sosfilt(sos, tail)
    delay = int(rng.uniform(0.002, 0.02) * sample_rate)
    rir = np.zeros(n + delay)
    rir[0] = 1.0
    direct_to_reverb = 10 ** (rng.uniform(-6, 12) / 20)
    rir[delay:] += tail / (np.linalg.norm(tail) + 1e-12) / direct_to_reverb
    return rir.astype(np.float32)


def reverberate(rng: np.random.Generator, x: np.ndarray, sample_rate: int) -> np.ndarray:
    wet = scipy.signal.fftconvolve(x, room_impulse_response(rng, sample_rate))[: len(x)]
    return (wet * (rms(x) / rms(wet))).astype(np.float32)


def band_limit(rng: np.random.Generator, x: np.ndarray, sample_rate: int) -> np.ndarray:
    """A random low-pass (phones, cheap mics, 8 kHz recordings) and/or high-pass (small mics)."""
    nyquist = sample_rate / 2
    if rng.random() < 0.7:
        cutoff = rng.uniform(0.35, 0.95) * nyquist
        order = int(rng.integers(2, 9))
        x = scipy.signal.sosfilt(
            scipy.signal.butter(order, cutoff, fs=sample_rate, output="sos"), x
        )
    if rng.random() < 0.5:
        cutoff = rng.uniform(60, 500)
        sos = scipy.signal.butter(2, cutoff, btype="highpass", fs=sample_rate, output="sos")
        x = scipy.signal.sosfilt(sos, x)
    return np.asarray(x, dtype=np.float32)


def mix(signal: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """`signal` over `background` at `snr_db` (active level of the signal over the background)."""
    scale = active_rms(signal) / (rms(background) * 10 ** (snr_db / 20))
    return (signal + background * scale).astype(np.float32)


def set_level(
    rng: np.random.Generator, x: np.ndarray, low_dbfs: float = -45, high_dbfs: float = -12
) -> np.ndarray:
    """Random overall gain, a microphone's self-noise floor, and clipping at full scale."""
    x = x * (10 ** (rng.uniform(low_dbfs, high_dbfs) / 20) / rms(x))
    floor = 10 ** (rng.uniform(-90, -65) / 20)
    x = x + floor * rng.standard_normal(len(x))
    return np.clip(x, -1.0, 1.0).astype(np.float32)
