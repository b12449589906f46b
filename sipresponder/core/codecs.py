"""Audio codecs for RTP payloads: G.711 (PCMU, PCMA) and G.722, bytes in, bytes out.

What belongs here: turning linear PCM (signed 16-bit little-endian, mono) into an RTP
payload and back, for the encodings the media side can send: G.711 mu-law and A-law
(ITU-T G.711) and G.722 at 64 kbit/s (ITU-T G.722, mode 1), and ``codec_for``, which
gives one uniform ``Codec`` per SDP encoding name.  Nothing about packets, timing or
files: the caller frames the payloads and reads the files.  Standard library only, and
none of its I/O, clocks, sockets or threads (no os, time, socket, asyncio, threading,
selectors, random), nor audioop (gone in Python 3.13); imports nothing of the project.

Speed: a G.711 frame (160 samples, 20 ms) is one ``struct.unpack``, one ``itemgetter``
over a 65,536-entry table and one ``bytes``; decoding is two ``bytes.translate`` and two
slice assignments.  G.722 is sample-by-sample Python (its ADPCM is recursive), with the
QMF filters' dot products done by ``sum(map(mul, ...))``.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter, mul
from typing import Final, Protocol

# --------------------------------------------------------------------------------------
# G.711 (ITU-T G.711, 1988): the classic segment/mantissa formulation (Sun's g711.c).


def _ulaw_of(sample: int) -> int:
    """The mu-law code of a signed 16-bit sample (G.711 Table 2; 14-bit magnitude, bias
    33, eight segments, every bit of the code inverted)."""
    value = sample >> 2  # G.711 mu-law works on 14 bits
    if value < 0:
        value = -value
        mask = 0x7F
    else:
        mask = 0xFF
    value += 33  # the bias (0x84 >> 2)
    if value > 8191:  # past the last segment: the largest code
        return 0x7F ^ mask
    segment = value.bit_length() - 6  # 33..8191: segment 0..7
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _ulaw_value(code: int) -> int:
    """The signed 16-bit value of a mu-law code: the middle of its interval (G.711
    Table 2)."""
    code = ~code & 0xFF
    magnitude = ((((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)) - 0x84
    return -magnitude if code & 0x80 else magnitude


def _alaw_of(sample: int) -> int:
    """The A-law code of a signed 16-bit sample (G.711 Table 1; 13-bit magnitude, eight
    segments, the even bits inverted: XOR 0x55, sign bit set for positive)."""
    value = sample >> 3  # G.711 A-law works on 13 bits
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1  # one's complement: -1 .. -4096 -> 0 .. 4095
    if value < 32:  # segments 0 and 1 share one step size
        return ((value >> 1) & 0x0F) ^ mask
    segment = value.bit_length() - 5  # 32..4095: segment 1..7
    return ((segment << 4) | ((value >> segment) & 0x0F)) ^ mask


def _alaw_value(code: int) -> int:
    """The signed 16-bit value of an A-law code: the middle of its interval (G.711
    Table 1)."""
    code ^= 0x55
    mantissa = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    # Segment 0 has the step of segment 1 without its offset.
    magnitude = mantissa + 8 if segment == 0 else (mantissa + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def _encode_table(code_of: Callable[[int], int], shift: int) -> list[int]:
    """The code of every 16-bit sample, indexed by the sample read as unsigned.  The code
    depends on ``sample >> shift`` only, so each distinct one is worked out once."""
    reduced = [code_of(((top << shift) ^ 0x8000) - 0x8000) for top in range(65536 >> shift)]
    repeat = 1 << shift
    return [code for code in reduced for _ in range(repeat)]


def _decode_tables(value_of: Callable[[int], int]) -> tuple[bytes, bytes]:
    """For each code, the low and the high byte of its 16-bit little-endian value."""
    values = [value_of(code) & 0xFFFF for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


#: Code per sample (the sample's two bytes read as an unsigned little-endian number).
_ULAW_ENCODE: Final = _encode_table(_ulaw_of, 2)
_ALAW_ENCODE: Final = _encode_table(_alaw_of, 3)
#: The low bytes and the high bytes of each code's value, for ``bytes.translate``.
_ULAW_DECODE: Final = _decode_tables(_ulaw_value)
_ALAW_DECODE: Final = _decode_tables(_alaw_value)


def _samples_of(pcm: bytes) -> tuple[int, ...]:
    """The samples of int16 LE ``pcm`` as unsigned 16-bit numbers."""
    if len(pcm) & 1:
        raise ValueError(f"PCM: odd length {len(pcm)} (16-bit samples are two bytes each)")
    return struct.unpack(f"<{len(pcm) >> 1}H", pcm)


def _g711_encode(pcm: bytes, table: list[int]) -> bytes:
    samples = _samples_of(pcm)
    if len(samples) > 1:
        # itemgetter with several keys: one C call gives the tuple of codes.
        return bytes(itemgetter(*samples)(table))
    return bytes(table[s] for s in samples)


def _g711_decode(data: bytes, tables: tuple[bytes, bytes]) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(tables[0])
    out[1::2] = data.translate(tables[1])
    return bytes(out)


def ulaw_encode(pcm: bytes) -> bytes:
    """G.711 mu-law (PCMU): one byte per int16 LE sample."""
    return _g711_encode(pcm, _ULAW_ENCODE)


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law (PCMU) to int16 LE PCM, two bytes per code."""
    return _g711_decode(data, _ULAW_DECODE)


def alaw_encode(pcm: bytes) -> bytes:
    """G.711 A-law (PCMA): one byte per int16 LE sample."""
    return _g711_encode(pcm, _ALAW_ENCODE)


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law (PCMA) to int16 LE PCM, two bytes per code."""
    return _g711_decode(data, _ALAW_DECODE)


# --------------------------------------------------------------------------------------
# G.722 (ITU-T G.722, 64 kbit/s, mode 1): a QMF splits 16 kHz PCM into two
# 8 kHz sub-bands; the lower is coded with 6-bit ADPCM (of which 4 bits feed the
# predictor: the embedded code), the higher with 2-bit ADPCM.  Block names (QUANTL,
# LOGSCL, UPPOL2, ...) are the standard's.  Bit exact with the standard's fixed point:
# every intermediate is kept in the range of the 16-bit word it has there.

#: The 24 QMF coefficients h0..h23 of G.722's transmit and receive filters; symmetric,
#: DC gain 2**13.
_QMF: Final = (3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876,
               3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11, 3)  # fmt: skip
#: The QMF's halves over 12 values, oldest first: h is symmetric, so the even
#: coefficients reversed are the odd ones and the odd reversed the even.  Transmit:
#: xA = sum(h[2i] x[j - 2i]) is _QMF_ODD over x[j - 22], x[j - 20], ..., x[j];
#: xB = sum(h[2i + 1] x[j - 1 - 2i]) is _QMF_EVEN over x[j - 23], ..., x[j - 1].
#: Receive: the first sample of a pair is _QMF_ODD over the last 12 (rl - rh), the second
#: _QMF_EVEN over the last 12 (rl + rh).
_QMF_ODD: Final = _QMF[1::2]
_QMF_EVEN: Final = _QMF[0::2]

#: QUANTL's decision levels (Q6 in the standard's computational details), 1..29 used.
_Q6: Final = (0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650,
              714, 786, 858, 940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980,
              2195, 2557, 2919)  # fmt: skip
#: QUANTL output code by interval (negative and positive difference).
_ILN: Final = (0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
               16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4)  # fmt: skip
_ILP: Final = (0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45,
               44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32)  # fmt: skip
#: Inverse quantisers: 6-bit (decoder output, INVQBL), 4-bit (predictor, INVQAL),
#: 2-bit (higher band, INVQAH).
_QM6: Final = (-136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512,
               -12280, -11192, -10232, -9360, -8576, -7856, -7192, -6576, -6000, -5456,
               -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688, -1360,
               -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
               10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576,
               3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136)  # fmt: skip
_QM4: Final = (0, -20456, -12896, -8968, -6288, -4240, -2584, -1200,
               20456, 12896, 8968, 6288, 4240, 2584, 1200, 0)  # fmt: skip
_QM2: Final = (-7408, -1616, 7408, 1616)
#: LOGSCL / LOGSCH: the log scale factor's step per code (WL via RIL4, WH via IH2).
_WL_BY_CODE: Final = tuple((-60, -30, 58, 172, 334, 538, 1198, 3042)[i]
                           for i in (0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0))  # fmt: skip
_WH_BY_CODE: Final = (798, -214, 798, -214)
#: The higher band's code: [difference is negative][magnitude over the threshold].
_IH: Final = ((3, 2), (1, 0))
_NB_MAX_LOW: Final = 18432
_NB_MAX_HIGH: Final = 22528
#: SCALEL / SCALEH's antilog table (ILB).
_ILB: Final = (2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599,
               2656, 2714, 2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371,
               3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008)  # fmt: skip


def _scale_table(shift: int, nb_max: int) -> tuple[int, ...]:
    """SCALEL (shift 8) / SCALEH (shift 10): the quantiser scale factor ``det`` for each
    ``nb >> 6`` (the log scale factor's top bits are all the block reads)."""
    table = []
    for top in range((nb_max >> 6) + 1):
        wd = shift - (top >> 5)
        base = _ILB[top & 31]
        table.append((base << -wd if wd < 0 else base >> wd) << 2)
    return tuple(table)


_DET_LOW: Final = _scale_table(8, _NB_MAX_LOW)
_DET_HIGH: Final = _scale_table(10, _NB_MAX_HIGH)


class _Band:
    """The adaptive predictor of one sub-band (G.722 Block 4), with its scale factor."""

    __slots__ = ("a1", "a2", "b", "d", "det", "nb", "p1", "p2", "r1", "s", "sz")

    def __init__(self, det: int) -> None:
        self.nb = 0  # log scale factor (LOGSCL / LOGSCH)
        self.det = det  # scale factor (SCALEL / SCALEH)
        self.s = 0  # signal estimate
        self.sz = 0  # its zero-section part
        self.r1 = 0  # reconstructed signal, one sample ago
        self.p1 = 0  # partially reconstructed signal, one and two samples ago
        self.p2 = 0
        self.a1 = 0  # pole coefficients
        self.a2 = 0
        self.b = (0, 0, 0, 0, 0, 0)  # zero coefficients b1..b6
        self.d = (0, 0, 0, 0, 0, 0)  # twice the quantised differences, 1..6 samples ago

    def adapt(self, dq: int) -> None:
        """Block 4 for the quantised difference ``dq``: updates the predictor and
        computes the next signal estimate ``s``.

        The saturations to 16 bits are written out (no calls: this runs 16,000 times a
        second per direction) and left out where the operands' bounds make them no-ops:
        ``det`` <= 16384, so |dq| <= 10228 and 2*dq fits; |a1| <= 27648, so UPPOL1's
        sum fits; |b_i| <= 32767 stays so under UPZERO's leak and step.
        """
        r = self.s + dq  # RECONS
        r = -32768 if r < -32768 else 32767 if r > 32767 else r
        p = self.sz + dq  # PARREC
        p = -32768 if p < -32768 else 32767 if p > 32767 else p
        negative = p < 0
        flip1 = negative != (self.p1 < 0)
        a1 = self.a1
        # UPPOL2: a2 leaks by 2**-7 and moves by sgn(p)sgn(p2) - f(a1)sgn(p)sgn(p1),
        # f(a1) = 4*a1 saturated; |a2| <= 0.75.
        wd = a1 << 2
        wd = -32768 if wd < -32768 else 32767 if wd > 32767 else wd
        if not flip1:
            wd = 32767 if wd == -32768 else -wd
        a2 = (wd >> 7) + (-128 if negative != (self.p2 < 0) else 128) + ((self.a2 * 32512) >> 15)
        a2 = -12288 if a2 < -12288 else 12288 if a2 > 12288 else a2
        # UPPOL1: a1 leaks by 2**-8 and moves by 3 * 2**-8 sgn(p)sgn(p1);
        # |a1| <= 1 - 2**-4 - a2.
        a1 = (-192 if flip1 else 192) + ((a1 * 32640) >> 15)
        limit = 15360 - a2
        a1 = -limit if a1 < -limit else limit if a1 > limit else a1
        # FILTEP: the pole section's estimate from the reconstructed signal.
        wd = r + r
        wd = -32768 if wd < -32768 else 32767 if wd > 32767 else wd
        sp = (a1 * wd) >> 15
        wd = self.r1 + self.r1
        wd = -32768 if wd < -32768 else 32767 if wd > 32767 else wd
        sp += (a2 * wd) >> 15
        sp = -32768 if sp < -32768 else 32767 if sp > 32767 else sp
        self.r1 = r
        self.p2 = self.p1
        self.p1 = p
        self.a1 = a1
        self.a2 = a2
        # UPZERO: each b_i leaks by 2**-8 and moves by 2**-7 sgn(dq)sgn(dq_i) (not at
        # all when dq is 0); DELAYA; FILTEZ over dq and the five before it.  Unrolled:
        # the six taps as locals, d_i kept doubled (FILTEZ's operand; same sign).
        step = 0 if dq == 0 else -128 if dq < 0 else 128  # the sign of dq * 2**-7
        b1, b2, b3, b4, b5, b6 = self.b
        d1, d2, d3, d4, d5, d6 = self.d
        b1 = ((b1 * 32640) >> 15) + (-step if d1 < 0 else step)
        b2 = ((b2 * 32640) >> 15) + (-step if d2 < 0 else step)
        b3 = ((b3 * 32640) >> 15) + (-step if d3 < 0 else step)
        b4 = ((b4 * 32640) >> 15) + (-step if d4 < 0 else step)
        b5 = ((b5 * 32640) >> 15) + (-step if d5 < 0 else step)
        b6 = ((b6 * 32640) >> 15) + (-step if d6 < 0 else step)
        dq += dq
        sz = (
            ((b1 * dq) >> 15)
            + ((b2 * d1) >> 15)
            + ((b3 * d2) >> 15)
            + ((b4 * d3) >> 15)
            + ((b5 * d4) >> 15)
            + ((b6 * d5) >> 15)
        )
        sz = -32768 if sz < -32768 else 32767 if sz > 32767 else sz
        self.b = (b1, b2, b3, b4, b5, b6)
        self.d = (dq, d1, d2, d3, d4, d5)
        self.sz = sz
        sp += sz  # PREDIC
        self.s = -32768 if sp < -32768 else 32767 if sp > 32767 else sp


class G722Encoder:
    """G.722 at 64 kbit/s: 16 kHz int16 LE PCM in, one byte per two samples out (the
    higher band's 2 bits above the lower band's 6).  State is kept between calls, an odd
    last sample included, so a stream may be cut anywhere."""

    __slots__ = ("_high", "_history", "_low")

    def __init__(self) -> None:
        self._low = _Band(32)
        self._high = _Band(8)
        # The 22 input samples before the next pair, for the 24-tap transmit QMF (and an
        # odd sample left over from the last call after them).
        self._history: list[int] = [0] * 22

    def encode(self, pcm: bytes) -> bytes:
        """Encodes ``pcm``; an odd last sample waits for the next call."""
        if len(pcm) & 1:
            raise ValueError(f"PCM: odd length {len(pcm)} (16-bit samples are two bytes each)")
        x = self._history
        x.extend(struct.unpack(f"<{len(pcm) >> 1}h", pcm))
        pairs = (len(x) - 22) >> 1
        # Transmit QMF for every pair at once.  With j the pair's second
        # sample, xA = sum(h[2i] x[j - 2i]) runs over the odd positions of ``x`` and
        # xB = sum(h[2i + 1] x[j - 2i - 1]) over the even ones (oldest first, the
        # symmetric h swaps its halves: see _QMF_ODD).  xL = (xA + xB), xH = (xA - xB),
        # each >> 14: 2**13 for the filter's gain, one more for the 15-bit sub-bands.
        evens = x[0::2]
        odds = x[1::2]
        sums_a = [sum(map(mul, _QMF_ODD, odds[k : k + 12])) for k in range(pairs)]
        sums_b = [sum(map(mul, _QMF_EVEN, evens[k : k + 12])) for k in range(pairs)]
        out = bytearray(pairs)
        low = self._low
        high = self._high
        low_adapt = low.adapt
        high_adapt = high.adapt
        for k in range(pairs):
            xa = sums_a[k]
            xb = sums_b[k]
            # Lower band: SUBTRA, QUANTL.  QUANTL finds the first i in 1..29 with
            # |el| < (q6[i] * det) >> 12, i.e. q6[i] >= ceil((|el| + 1) * 4096 / det)
            # (|el| taken as el or ~el, as the standard does): a bisection.
            det = low.det
            el = ((xa + xb) >> 14) - low.s
            el = -32768 if el < -32768 else 32767 if el > 32767 else el
            wd = el if el >= 0 else -el - 1
            i = bisect_left(_Q6, -((-(wd + 1) << 12) // det), 1, 30)
            ilow = _ILN[i] if el < 0 else _ILP[i]
            # INVQAL (the 4-bit embedded code), LOGSCL, SCALEL, then Block 4.
            ril = ilow >> 2
            nb = ((low.nb * 127) >> 7) + _WL_BY_CODE[ril]
            nb = 0 if nb < 0 else _NB_MAX_LOW if nb > _NB_MAX_LOW else nb
            low.nb = nb
            low.det = _DET_LOW[nb >> 6]
            low_adapt((det * _QM4[ril]) >> 15)
            # Higher band: SUBTRA, QUANTH (one threshold), INVQAH, LOGSCH, SCALEH.
            det = high.det
            eh = ((xa - xb) >> 14) - high.s
            eh = -32768 if eh < -32768 else 32767 if eh > 32767 else eh
            wd = eh if eh >= 0 else -eh - 1
            ihigh = _IH[eh < 0][wd >= (564 * det) >> 12]
            nb = ((high.nb * 127) >> 7) + _WH_BY_CODE[ihigh]
            nb = 0 if nb < 0 else _NB_MAX_HIGH if nb > _NB_MAX_HIGH else nb
            high.nb = nb
            high.det = _DET_HIGH[nb >> 6]
            high_adapt((det * _QM2[ihigh]) >> 15)
            out[k] = (ihigh << 6) | ilow
        del x[: 2 * pairs]
        return bytes(out)


class G722Decoder:
    """G.722 at 64 kbit/s: one byte per two samples in, 16 kHz int16 LE PCM out.  State
    is kept between calls."""

    __slots__ = ("_differences", "_high", "_low", "_sums")

    def __init__(self) -> None:
        self._low = _Band(32)
        self._high = _Band(8)
        # The last 11 (rl - rh) and (rl + rh) for the 12-tap halves of the receive QMF.
        self._differences: list[int] = [0] * 11
        self._sums: list[int] = [0] * 11

    def decode(self, data: bytes) -> bytes:
        """Decodes ``data``, two samples per byte."""
        low = self._low
        high = self._high
        low_adapt = low.adapt
        high_adapt = high.adapt
        differences = self._differences
        sums = self._sums
        for code in data:
            # Lower band: INVQBL with all 6 bits for the output, LIMIT; INVQAL with the
            # 4-bit embedded code for the predictor, LOGSCL, SCALEL, Block 4.
            det = low.det
            rl = low.s + ((det * _QM6[code & 0x3F]) >> 15)
            rl = -16384 if rl < -16384 else 16383 if rl > 16383 else rl
            ril = (code & 0x3F) >> 2
            nb = ((low.nb * 127) >> 7) + _WL_BY_CODE[ril]
            nb = 0 if nb < 0 else _NB_MAX_LOW if nb > _NB_MAX_LOW else nb
            low.nb = nb
            low.det = _DET_LOW[nb >> 6]
            low_adapt((det * _QM4[ril]) >> 15)
            # Higher band: INVQAH, LIMIT, LOGSCH, SCALEH, Block 4.
            det = high.det
            ihigh = code >> 6
            dh = (det * _QM2[ihigh]) >> 15
            rh = high.s + dh
            rh = -16384 if rh < -16384 else 16383 if rh > 16383 else rh
            nb = ((high.nb * 127) >> 7) + _WH_BY_CODE[ihigh]
            nb = 0 if nb < 0 else _NB_MAX_HIGH if nb > _NB_MAX_HIGH else nb
            high.nb = nb
            high.det = _DET_HIGH[nb >> 6]
            high_adapt(dh)
            differences.append(rl - rh)
            sums.append(rl + rh)
        # Receive QMF for every pair at once: the filter's 2**13 gain, less
        # one doubling back from the 15-bit sub-bands (>> 11), saturated to 16 bits.
        count = len(data)
        out = [0] * (2 * count)
        out[0::2] = [sum(map(mul, _QMF_ODD, differences[k : k + 12])) >> 11 for k in range(count)]
        out[1::2] = [sum(map(mul, _QMF_EVEN, sums[k : k + 12])) >> 11 for k in range(count)]
        if out and (min(out) < -32768 or max(out) > 32767):
            out = [-32768 if v < -32768 else 32767 if v > 32767 else v for v in out]
        del differences[:count]
        del sums[:count]
        return struct.pack(f"<{len(out)}h", *out)


# --------------------------------------------------------------------------------------
# One interface for the media side.


class Encoder(Protocol):
    """Turns PCM at the codec's ``rate`` into payload bytes."""

    def encode(self, pcm: bytes, /) -> bytes: ...


class Decoder(Protocol):
    """Turns payload bytes into PCM at the codec's ``rate``."""

    def decode(self, payload: bytes, /) -> bytes: ...


class _G711:
    """A G.711 law has no state: one object per law serves every stream."""

    __slots__ = ("_decode", "_encode")

    def __init__(self, encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]) -> None:
        self._encode = encode
        self._decode = decode

    def encode(self, pcm: bytes, /) -> bytes:
        return self._encode(pcm)

    def decode(self, payload: bytes, /) -> bytes:
        return self._decode(payload)


_ULAW: Final = _G711(ulaw_encode, ulaw_decode)
_ALAW: Final = _G711(alaw_encode, alaw_decode)


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP audio encoding: its SDP name (lower case), the PCM sampling ``rate`` its
    encoder takes and its decoder gives, and the RTP ``clock`` its timestamps count."""

    name: str
    rate: int
    clock: int

    def encoder(self) -> Encoder:
        """A new encoder (stateful for G.722: one per stream)."""
        return G722Encoder() if self.name == "g722" else self._g711()

    def decoder(self) -> Decoder:
        """A new decoder (stateful for G.722: one per stream)."""
        return G722Decoder() if self.name == "g722" else self._g711()

    def _g711(self) -> _G711:
        if self.name == "pcmu":
            return _ULAW
        if self.name == "pcma":
            return _ALAW
        raise ValueError(f"no codec {self.name!r} here (only {', '.join(sorted(ENCODABLE))})")


#: G.722 samples at 16 kHz but its RTP clock runs at 8000 Hz, an error kept for
#: compatibility with RFC 1890 (RFC 3551 §4.5.2): 160 timestamp units per 20 ms, as for
#: G.711.
_CODECS: Final = {
    "pcmu": Codec("pcmu", 8000, 8000),
    "pcma": Codec("pcma", 8000, 8000),
    "g722": Codec("g722", 16000, 8000),
}

#: The SDP encoding names (lower case) we can encode and decode.
ENCODABLE: Final = frozenset(_CODECS)


def codec_for(name: str) -> Codec | None:
    """The codec of an SDP encoding name (any case), or None when we have none."""
    return _CODECS.get(name.lower())
