"""Linear PCM for the media side: tones, silence, WAV files as bytes, resampling, and
measuring a frequency.

What belongs here: the audio a session sends or records before it meets a codec —
``Tone`` (a phase-continuous sine, frame by frame), ``silence``, ``read_wav`` and
``write_wav`` (RIFF/WAVE parsed and built from bytes: the caller reads and writes the
files), ``resample`` (linear interpolation), and ``goertzel`` / ``dominant_frequency``,
which tell what pitch a stretch of PCM has (for tests and checks).  All PCM here is mono,
signed 16-bit little-endian.  No file I/O, no clock: standard library only, and none of
its I/O, clocks, sockets or threads (no os, time, socket, asyncio, threading, selectors,
random), nor audioop (gone in Python 3.13); of the project, ``codecs`` only (G.711 WAVs).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from fractions import Fraction
from typing import Final

from .codecs import alaw_decode, ulaw_decode

#: int16 full scale, the unit of ``Tone``'s level and of ``goertzel``'s power.
_FULL_SCALE: Final = 32768
_BIG_ENDIAN: Final = sys.byteorder == "big"


def _check_even(pcm: bytes, what: str) -> None:
    """``ValueError`` when ``pcm`` is no whole number of samples (``what`` says whose)."""
    if len(pcm) & 1:
        raise ValueError(f"{what}: odd PCM length {len(pcm)} (16-bit samples are two bytes)")


def _samples(pcm: bytes, what: str) -> array[int]:
    """The int16 LE samples of ``pcm``; ``what`` names the caller in the error."""
    _check_even(pcm, what)
    samples = array("h")
    samples.frombytes(pcm)
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def _pcm(samples: array[int]) -> bytes:
    """``samples`` as int16 LE bytes."""
    if _BIG_ENDIAN:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


# --------------------------------------------------------------------------------------
# Generated audio.


class Tone:
    """A sine of ``frequency`` Hz at ``level`` of full scale, ``rate`` samples a second,
    handed out ``count`` samples at a time with no break in phase between calls.

    The phase is exact: the sample index is kept modulo the tone's period in samples
    (``frequency / rate`` as an exact fraction), so it neither drifts nor loses precision
    however long the call lasts.
    """

    __slots__ = ("_amplitude", "_cycles", "_index", "_period", "frequency", "level", "rate")

    def __init__(self, frequency: float, rate: int, level: float = 0.25) -> None:
        if rate <= 0:
            raise ValueError(f"tone: sample rate {rate} Hz is not positive")
        if not 0 < frequency < rate / 2:
            raise ValueError(
                f"tone: frequency {frequency} Hz is not between 0 and {rate / 2:g} Hz "
                f"(half the {rate} Hz sample rate)"
            )
        if not 0 <= level <= 1:
            raise ValueError(f"tone: level {level} is not between 0 and 1 (of full scale)")
        self.frequency = frequency
        self.rate = rate
        self.level = level
        # Cycles per sample = _cycles / _period exactly: the phase of sample n is
        # 2*pi * ((n * _cycles) mod _period) / _period.
        ratio = Fraction(frequency) / rate
        self._cycles = ratio.numerator
        self._period = ratio.denominator
        self._index = 0  # the next sample's index, modulo _period
        self._amplitude = level * (_FULL_SCALE - 1)

    def samples(self, count: int) -> bytes:
        """The next ``count`` samples, int16 LE."""
        if count < 0:
            raise ValueError(f"tone: negative sample count {count}")
        cycles = self._cycles
        period = self._period
        start = self._index
        step = 2 * math.pi / period
        amplitude = self._amplitude
        sin = math.sin
        values = array(
            "h",
            [
                round(amplitude * sin(((n * cycles) % period) * step))
                for n in range(start, start + count)
            ],
        )
        self._index = (start + count) % period
        return _pcm(values)


def silence(count: int) -> bytes:
    """``count`` samples of silence, int16 LE."""
    if count < 0:
        raise ValueError(f"silence: negative sample count {count}")
    return bytes(2 * count)


# --------------------------------------------------------------------------------------
# WAV files (RIFF/WAVE), as bytes.

_PCM: Final = 1
_ALAW: Final = 6
_MULAW: Final = 7
_EXTENSIBLE: Final = 0xFFFE
#: WAVE_FORMAT_EXTENSIBLE's sub-format GUID is the format code in its first two bytes
#: followed by these fourteen (KSDATAFORMAT_SUBTYPE_PCM and its kin).
_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
#: 8-bit PCM is unsigned, centred on 128: its high byte as int16 is the byte XOR 0x80.
_UNSIGNED_TO_SIGNED: Final = bytes(b ^ 0x80 for b in range(256))


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """The chunks of a RIFF/WAVE file by id (the first of each id), after the header.  A
    chunk cut short by the end of the file is kept as far as it goes."""
    if len(data) < 12 or data[:4] != b"RIFF":
        raise ValueError("not a WAV file: no RIFF header")
    if data[8:12] != b"WAVE":
        raise ValueError(f"not a WAV file: the RIFF form is {data[8:12]!r}, not WAVE")
    chunks: dict[bytes, bytes] = {}
    at = 12
    while at + 8 <= len(data):
        name = data[at : at + 4]
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        chunks.setdefault(name, data[at + 8 : at + 8 + size])
        at += 8 + size + (size & 1)  # chunks are padded to an even length
    return chunks


def read_wav(data: bytes) -> tuple[int, bytes]:
    """The sample rate and the mono int16 LE PCM of a WAV file's bytes.

    Takes PCM 8-bit (unsigned) and 16-bit, A-law and mu-law (G.711), mono or stereo
    (mixed down to mono: the mean of the two channels, rounded down), in a plain fmt
    chunk or WAVE_FORMAT_EXTENSIBLE; other chunks (LIST, fact, ...) are skipped.  Data
    cut short is read up to its last whole sample.  ``ValueError`` names what is wrong
    with anything else.
    """
    chunks = _chunks(data)
    fmt = chunks.get(b"fmt ")
    if fmt is None:
        raise ValueError("WAV: no fmt chunk")
    if len(fmt) < 16:
        raise ValueError(f"WAV: fmt chunk too short ({len(fmt)} bytes, at least 16)")
    code, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == _EXTENSIBLE:
        if len(fmt) < 40:
            raise ValueError(f"WAV: extensible fmt chunk too short ({len(fmt)} bytes, 40)")
        guid = fmt[24:40]
        if guid[2:] != _GUID_TAIL:
            raise ValueError(f"WAV: unsupported extensible sub-format {guid.hex()}")
        code = int.from_bytes(guid[:2], "little")
    if code == _PCM:
        if bits not in (8, 16):
            raise ValueError(f"WAV: unsupported PCM sample size {bits} bits (only 8 and 16)")
    elif code in (_ALAW, _MULAW):
        if bits != 8:
            name = "A-law" if code == _ALAW else "mu-law"
            raise ValueError(f"WAV: {name} with {bits} bits per sample (must be 8)")
    else:
        raise ValueError(f"WAV: unsupported format {code} (only PCM 8/16-bit, A-law, mu-law)")
    if channels not in (1, 2):
        raise ValueError(f"WAV: unsupported channel count {channels} (only mono or stereo)")
    if rate == 0:
        raise ValueError("WAV: sample rate 0")
    body = chunks.get(b"data")
    if body is None:
        raise ValueError("WAV: no data chunk")
    frame = channels * bits // 8
    body = body[: len(body) - len(body) % frame]
    if code == _ALAW:
        pcm = alaw_decode(body)
    elif code == _MULAW:
        pcm = ulaw_decode(body)
    elif bits == 8:
        wide = bytearray(2 * len(body))
        wide[1::2] = body.translate(_UNSIGNED_TO_SIGNED)
        pcm = bytes(wide)
    else:
        pcm = body
    if channels == 2:
        both = _samples(pcm, "WAV")
        pcm = _pcm(array("h", [(a + b) >> 1 for a, b in zip(both[0::2], both[1::2], strict=True)]))
    return rate, pcm


def write_wav(pcm: bytes, rate: int) -> bytes:
    """A WAV file's bytes: ``pcm`` (mono int16 LE) at ``rate`` Hz, 16-bit PCM."""
    if rate <= 0:
        raise ValueError(f"WAV: sample rate {rate} Hz is not positive")
    _check_even(pcm, "WAV")
    if len(pcm) > 0xFFFFFFFF - 36:
        raise ValueError(f"WAV: {len(pcm)} bytes of PCM is more than a RIFF file holds")
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,  # mono
        rate,
        rate * 2,  # bytes a second
        2,  # bytes a frame
        16,  # bits a sample
        b"data",
        len(pcm),
    )
    return header + pcm


# --------------------------------------------------------------------------------------
# Resampling.


def resample(pcm: bytes, source_rate: int, target_rate: int) -> bytes:
    """``pcm`` (mono int16 LE) at ``source_rate`` Hz resampled to ``target_rate`` Hz by
    linear interpolation between neighbouring samples, in exact integer arithmetic.

    For whole buffers (a file to play), not a stream cut in frames: each call starts
    afresh.  Output sample i is taken at input position i * source / target; there are
    floor(n * target / source) of them, so the duration is kept.  There is no
    anti-aliasing filter: going down, what lies above the new half rate folds back (a
    voice prompt at 16 or 44.1 kHz played at 8 kHz loses little of its intelligibility).
    """
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"resample: rates must be positive ({source_rate} -> {target_rate})")
    samples = _samples(pcm, "resample")
    if source_rate == target_rate:
        return bytes(pcm)
    last = len(samples) - 1
    out = array("h")
    append = out.append
    half = target_rate // 2
    for i in range(len(samples) * target_rate // source_rate):
        at, fraction = divmod(i * source_rate, target_rate)
        a = samples[at]
        b = samples[at + 1] if at < last else a
        append(a + ((b - a) * fraction + half) // target_rate)  # rounded to nearest
    return _pcm(out)


# --------------------------------------------------------------------------------------
# Measuring a frequency.


def goertzel(pcm: bytes, rate: int, frequency: float) -> float:
    """The relative power of ``frequency`` Hz in ``pcm`` (mono int16 LE at ``rate``):
    |X(f)|^2 of the samples as fractions of full scale, times 4 / N^2.  A sine of
    amplitude A (1 = full scale) at that frequency gives about A^2 (exactly, over a
    whole number of its cycles); silence gives 0.  No window: a tone f Hz away from the
    one asked for leaks into it when f is under about rate / N.
    """
    if rate <= 0:
        raise ValueError(f"goertzel: sample rate {rate} Hz is not positive")
    samples = _samples(pcm, "goertzel")
    if not samples:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = 0.0
    s2 = 0.0
    for x in samples:  # s[n] = x[n] + 2cos(w) s[n-1] - s[n-2]
        s1, s2 = x + coefficient * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coefficient * s1 * s2  # |X(f)|^2
    return 4 * power / (len(samples) * _FULL_SCALE) ** 2


def dominant_frequency(
    pcm: bytes, rate: int, low: float = 100, high: float = 4000, step: float = 10
) -> float:
    """The frequency among ``low``, ``low + step``, ... up to ``high`` (and below half
    of ``rate``) where ``goertzel`` finds the most power; ``low`` when they all have
    none.  The resolution is ``step``, and no finer than about rate / len(samples).
    """
    if step <= 0:
        raise ValueError(f"dominant_frequency: step {step} Hz is not positive")
    if not 0 <= low <= high:
        raise ValueError(f"dominant_frequency: no frequencies from {low} to {high} Hz")
    best = low
    best_power = -1.0
    n = 0
    while True:
        frequency = low + n * step
        if frequency > high or frequency >= rate / 2:
            break
        power = goertzel(pcm, rate, frequency)
        if power > best_power:
            best, best_power = frequency, power
        n += 1
    return best
