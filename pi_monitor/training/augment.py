"""Augmentation: what a nursery microphone adds that the corpus lacks.

Generated stationary noise of random colour with slow modulation stands in for white-noise
machines and fans; generated room impulse responses for reverberation; random low- and
high-pass filters on both classes so bandwidth says nothing about the label; mixtures at a
chosen signal-to-noise ratio. All functions are pure: a seeded `numpy.random.Generator` in,
samples out.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.signal


@lru_cache(maxsize=4096)
def _butter(order: int, cutoff_hz: int, btype: str, sample_rate: int) -> np.ndarray:
    """Filter designs are cached on a 10 Hz grid: designing one costs more than filtering."""
    return scipy.signal.butter(order, cutoff_hz, btype=btype, fs=sample_rate, output="sos")


def butter(order: int, cutoff_hz: float, sample_rate: int, btype: str = "lowpass") -> np.ndarray:
    return _butter(order, int(round(cutoff_hz, -1)), btype, sample_rate)


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


MODULATION_CHUNK = 1 << 20  # samples modulated at a time
EXACT_FFT_MAX = 1 << 22  # longer noise is drawn at an FFT-friendly length and cut


def fast_fft_length(n: int) -> int:
    """The smallest 2^a * 3^b * 5^c >= n. An FFT of a length with a large prime factor falls
    back on Bluestein's algorithm, which needed 20 times its input in memory (25 GB for a
    fold's three-hour false-alarm stream)."""
    best, p5 = 2 * n, 1
    while p5 < 2 * n:
        p35 = p5
        while p35 < 2 * n:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def coloured_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Stationary noise with a random spectral slope, a few resonances and slow modulation.

    Slope from brown (-2) to blue (+1) covers white-noise machines, fans, hair dryers and
    hiss; resonant peaks add motor hum; a 0.05-2 Hz amplitude modulation makes fans and waves.
    """
    wanted, n = n, fast_fft_length(n) if n > EXACT_FFT_MAX else n
    spectrum = np.empty(n // 2 + 1, np.complex128)  # built in place: an evaluation stream
    spectrum.real = rng.standard_normal(len(spectrum))  # is hours long, its temporaries GBs
    spectrum.imag = rng.standard_normal(len(spectrum))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    shape = np.maximum(freqs, 20.0)
    shape /= 1000.0
    shape **= rng.uniform(-2.0, 1.0) / 2
    for _ in range(rng.integers(0, 4)):
        centre = rng.uniform(50, sample_rate / 2 * 0.9)
        width = centre * rng.uniform(0.02, 0.3)
        shape *= 1 + rng.uniform(1, 20) * np.exp(-0.5 * ((freqs - centre) / width) ** 2)
    del freqs
    spectrum *= shape
    del shape
    noise = np.fft.irfft(spectrum, n)
    del spectrum
    if rng.random() < 0.7:
        rate, depth = rng.uniform(0.05, 2.0), rng.uniform(0.0, 0.6)
        phase = rng.uniform(0, 2 * np.pi)
        for start in range(0, n, MODULATION_CHUNK):
            t = np.arange(start, min(n, start + MODULATION_CHUNK)) / sample_rate
            noise[start : start + len(t)] *= 1 + depth * np.sin(2 * np.pi * rate * t + phase)
    noise = noise[:wanted]
    return (noise / rms(noise)).astype(np.float32)


def tonal_sound(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Generated notes with clean harmonics: music boxes, lullaby instruments, humming, chimes.

    Tonal music was the first models' commonest false alarm. These notes share a cry's pitch
    range and harmonic comb but not its rough, breathy, formant-shaped voice, so they teach
    the model that harmonic does not mean crying. Notes may decay like a plucked or struck
    string, or sustain with vibrato and a slow pitch glide; up to three voices sound at once.
    """
    out = np.zeros(n)
    t_all = np.arange(n) / sample_rate
    for _ in range(int(rng.integers(1, 4))):
        start = int(rng.uniform(-0.3, 0.6) * n)
        while start < n:
            length = int(rng.uniform(0.08, 0.9) * sample_rate)
            lo, hi = max(start, 0), min(start + length, n)
            if hi > lo:
                t = t_all[lo:hi] - start / sample_rate
                f0 = np.exp(rng.uniform(np.log(110), np.log(1200)))
                glide = rng.uniform(-0.3, 0.3) if rng.random() < 0.3 else 0.0
                vibrato = rng.uniform(0, 0.03) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
                freq = f0 * (1 + glide * np.sin(np.pi * t / (length / sample_rate)) + vibrato)
                phase = 2 * np.pi * np.cumsum(freq) / sample_rate
                tilt, odd_only = rng.uniform(0.5, 3.0), rng.random() < 0.2
                note = np.zeros(hi - lo)
                for k in range(1, int(rng.integers(1, 16)) + 1):
                    if k * f0 * 1.35 >= sample_rate / 2 or (odd_only and k % 2 == 0):
                        continue
                    note += k**-tilt * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
                if rng.random() < 0.5:
                    envelope = np.exp(-t * rng.uniform(2, 12))
                else:
                    envelope = np.minimum(1, t / rng.uniform(0.01, 0.1))
                    envelope *= np.minimum(1, (length / sample_rate - t) / 0.05)
                out[lo:hi] += envelope * note * 10 ** rng.uniform(-0.5, 0)
            start += length + int(rng.exponential(0.1) * sample_rate)
    if not out.any():
        return tonal_sound(rng, n, sample_rate)
    return (out / rms(out)).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Exponentially decaying noise tail after a direct path; RT60 0.1-0.8 s, random damping."""
    rt60 = rng.uniform(0.1, 0.8)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    sos = butter(2, rng.uniform(1500, sample_rate / 2 * 0.95), sample_rate)
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
        x = scipy.signal.sosfilt(butter(order, cutoff, sample_rate), x)
    if rng.random() < 0.5:
        cutoff = rng.uniform(60, 500)
        x = scipy.signal.sosfilt(butter(2, cutoff, sample_rate, "highpass"), x)
    return np.asarray(x, dtype=np.float32)


def change_speed(x: np.ndarray, n: int) -> np.ndarray:
    """`x` played at the speed that makes it last `n` samples, its pitch moving with it."""
    return scipy.signal.resample(x, n).astype(np.float32)


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
