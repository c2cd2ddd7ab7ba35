"""A tiny Standard MIDI File writer: the generated lullabies need nothing more than notes.

Format 0 (one track, several channels), one tempo and one time signature, a program, volume,
reverb and chorus send per channel. Written here so rendering adds no runtime dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

TICKS_PER_BEAT = 480


@dataclass(frozen=True)
class Note:
    """One note: start and length in beats (quarter notes), MIDI pitch and velocity."""

    start: float
    length: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Part:
    """The notes one instrument plays on one channel, with its mixer settings (0-127)."""

    channel: int
    program: int
    notes: tuple[Note, ...]
    volume: int = 100
    reverb: int = 40
    chorus: int = 0


def _vlq(n: int) -> bytes:
    """MIDI variable-length quantity: 7 bits a byte, high bit set on all but the last."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _check(part: Part) -> None:
    if not 0 <= part.channel <= 15 or part.channel == 9:
        raise ValueError(f"channel {part.channel}: use 0-15 except 9 (the drum channel)")
    for name in ("program", "volume", "reverb", "chorus"):
        if not 0 <= getattr(part, name) <= 127:
            raise ValueError(f"{name} {getattr(part, name)} of channel {part.channel}: not 0-127")
    for n in part.notes:
        if not (0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 and n.start >= 0 < n.length):
            raise ValueError(f"channel {part.channel}: invalid note {n}")


def smf(parts: tuple[Part, ...], bpm: float, meter: tuple[int, int] = (4, 4)) -> bytes:
    """The bytes of a format-0 MIDI file playing `parts` at `bpm` quarter notes a minute."""
    numerator, denominator = meter
    if denominator not in (1, 2, 4, 8, 16, 32) or not 1 <= numerator <= 32:
        raise ValueError(f"time signature {numerator}/{denominator}: not a MIDI meter")
    for p in parts:
        _check(p)
    timed: list[tuple[int, int, bytes]] = []  # (tick, order: offs before ons, message)
    for p in parts:
        ch = p.channel
        timed += [
            (0, 0, bytes([0xC0 | ch, p.program])),
            (0, 0, bytes([0xB0 | ch, 7, p.volume])),
            (0, 0, bytes([0xB0 | ch, 91, p.reverb])),
            (0, 0, bytes([0xB0 | ch, 93, p.chorus])),
        ]
        for n in p.notes:
            on = round(n.start * TICKS_PER_BEAT)
            off = max(on + 1, round((n.start + n.length) * TICKS_PER_BEAT))
            timed.append((on, 2, bytes([0x90 | ch, n.pitch, n.velocity])))
            timed.append((off, 1, bytes([0x80 | ch, n.pitch, 0])))
    tempo = round(60_000_000 / bpm).to_bytes(3, "big")
    events = [
        b"\x00\xff\x51\x03" + tempo,
        b"\x00\xff\x58\x04" + bytes([numerator, denominator.bit_length() - 1, 24, 8]),
    ]
    now = 0
    for tick, _, message in sorted(timed, key=lambda t: (t[0], t[1])):
        events.append(_vlq(tick - now) + message)
        now = tick
    events.append(_vlq(4 * TICKS_PER_BEAT) + b"\xff\x2f\x00")  # a bar of tail to ring out
    track = b"".join(events)
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += TICKS_PER_BEAT.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + track
