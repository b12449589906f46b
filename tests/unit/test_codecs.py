"""The RTP audio codecs: G.711 mu-law and A-law (ITU-T G.711), G.722 (ITU-T G.722)."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipresponder.core.audio import Tone, dominant_frequency, goertzel
from sipresponder.core.codecs import (
    ENCODABLE,
    Codec,
    G722Decoder,
    G722Encoder,
    alaw_decode,
    alaw_encode,
    codec_for,
    ulaw_decode,
    ulaw_encode,
)

EVERY_SAMPLE = struct.pack("<65536h", *range(-32768, 32768))
EVERY_CODE = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def values(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def snr_db(data: bytes, rate: int, frequency: float) -> float:
    """Signal-to-noise ratio of a tone: the least-squares sine at ``frequency`` (any
    phase, so any codec delay) against what is left."""
    x = values(data)
    w = 2 * math.pi * frequency / rate
    c = 2 / len(x) * sum(v * math.cos(w * i) for i, v in enumerate(x))
    s = 2 / len(x) * sum(v * math.sin(w * i) for i, v in enumerate(x))
    fit = [c * math.cos(w * i) + s * math.sin(w * i) for i in range(len(x))]
    noise = sum((v - f) ** 2 for v, f in zip(x, fit, strict=True))
    return 10 * math.log10(sum(f * f for f in fit) / noise)


# ─── G.711 ───

# (sample, code): G.711 Table 2 (mu-law) / Table 1 (A-law) as the Sun reference codes them.
ULAW_CODES = [(0, 0xFF), (-1, 0x7E), (4, 0xFE), (32767, 0x80), (-32768, 0x00), (-32767, 0x00),
              (132, 0xEF), (-132, 0x6F), (8031, 0xA0), (100, 0xF2)]  # fmt: skip
ALAW_CODES = [(0, 0xD5), (-1, 0x55), (16, 0xD4), (32767, 0xAA), (-32768, 0x2A),
              (256, 0xC5), (-256, 0x5A), (4096, 0x85)]  # fmt: skip
# (code, value): each code decodes to the middle of its interval.
ULAW_VALUES = [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xEF, 132),
               (0xFE, 8), (0x7E, -8), (0xCF, 924)]  # fmt: skip
ALAW_VALUES = [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xC5, 264),
               (0xA5, 16896)]  # fmt: skip


@pytest.mark.parametrize(("sample", "code"), ULAW_CODES)
def test_ulaw_encodes_known_values(sample: int, code: int) -> None:
    assert ulaw_encode(pcm(sample)) == bytes([code])


@pytest.mark.parametrize(("sample", "code"), ALAW_CODES)
def test_alaw_encodes_known_values(sample: int, code: int) -> None:
    assert alaw_encode(pcm(sample)) == bytes([code])


@pytest.mark.parametrize(("code", "value"), ULAW_VALUES)
def test_ulaw_decodes_known_values(code: int, value: int) -> None:
    assert values(ulaw_decode(bytes([code]))) == [value]


@pytest.mark.parametrize(("code", "value"), ALAW_VALUES)
def test_alaw_decodes_known_values(code: int, value: int) -> None:
    assert values(alaw_decode(bytes([code]))) == [value]


def test_a_frame_encodes_sample_by_sample() -> None:
    # A 160-sample frame takes the fast path; it must agree with one sample at a time.
    frame = pcm(*(int(30000 * math.sin(i / 7)) for i in range(160)))
    assert ulaw_encode(frame) == b"".join(ulaw_encode(frame[i : i + 2]) for i in range(0, 320, 2))
    assert alaw_encode(frame) == b"".join(alaw_encode(frame[i : i + 2]) for i in range(0, 320, 2))


Transcode = Callable[[bytes], bytes]
G711: list[tuple[Transcode, Transcode]] = [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]


def close(x: int, y: int, peak: int) -> bool:
    """Whether ``y`` is what G.711 may make of ``x``: logarithmic, so the error grows with
    the amplitude (at most about 3 %), up to the largest value a code has."""
    if abs(x) > peak:
        return y == (peak if x > 0 else -peak)
    return abs(y - x) <= abs(x) / 32 + 8


@pytest.mark.parametrize(("encode", "decode"), G711)
def test_g711_every_code_is_a_fixed_point(encode: Transcode, decode: Transcode) -> None:
    # decode(code) is the middle of the code's interval: it encodes back to the code,
    # except mu-law's negative zero (0x7F), which decodes to 0 like 0xFF.
    back = encode(decode(EVERY_CODE))
    differing = [(c, b) for c, b in zip(EVERY_CODE, back, strict=True) if c != b]
    assert differing == ([(0x7F, 0xFF)] if encode is ulaw_encode else [])
    # So over every 16-bit sample, encode . decode . encode is encode.
    codes = encode(EVERY_SAMPLE)
    assert len(codes) == 65536
    assert encode(decode(codes)) == codes


@pytest.mark.parametrize(("encode", "decode"), G711)
def test_g711_is_monotonic_and_close(encode: Transcode, decode: Transcode) -> None:
    out = values(decode(encode(EVERY_SAMPLE)))
    assert out == sorted(out)
    peak = max(out)
    assert peak == (32124 if encode is ulaw_encode else 32256)
    assert min(out) == -peak
    bad = [(x, y) for x, y in zip(range(-32768, 32768), out, strict=True) if not close(x, y, peak)]
    assert not bad


@pytest.mark.parametrize(("encode", "decode"), G711)
def test_g711_round_trip_of_a_sine(encode: Transcode, decode: Transcode) -> None:
    tone = Tone(1000, 8000, 0.5).samples(800)
    coded = encode(tone)
    assert len(coded) == 800
    out = decode(coded)
    assert len(out) == 1600
    assert all(close(x, y, 32124) for x, y in zip(values(tone), values(out), strict=True))
    assert snr_db(out, 8000, 1000) > 30  # G.711: about 38 dB for a loud tone


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_g711_lengths_and_bounds(samples: list[int]) -> None:
    data = pcm(*samples)
    for encode, decode in G711:
        codes = encode(data)
        assert len(codes) == len(samples)
        out = values(decode(codes))
        peak = 32124 if encode is ulaw_encode else 32256
        assert all(close(x, y, peak) for x, y in zip(samples, out, strict=True))


def test_g711_empty_and_odd() -> None:
    assert ulaw_encode(b"") == alaw_encode(b"") == b""
    assert ulaw_decode(b"") == alaw_decode(b"") == b""
    for encode, _ in G711:
        with pytest.raises(ValueError, match="odd length 3"):
            encode(b"\x00\x00\x00")


# ─── G.722 ───

RATE = 16000


def g722_round_trip(signal: bytes) -> bytes:
    return G722Decoder().decode(G722Encoder().encode(signal))


@pytest.mark.parametrize("frequency", [1000, 3000, 6000])
def test_g722_tone_survives(frequency: int) -> None:
    # 1 and 3 kHz go through the lower sub-band, 6 kHz through the higher one.
    tone = Tone(frequency, RATE, 0.5).samples(RATE // 2)
    coded = G722Encoder().encode(tone)
    assert len(coded) == RATE // 4  # 64 kbit/s: a byte per two samples
    out = G722Decoder().decode(coded)
    assert len(out) == len(tone)
    settled = out[2 * RATE // 10 :]  # after 100 ms of adaptation
    assert dominant_frequency(settled[: 2 * 3200], RATE, 100, 7900) == frequency
    assert goertzel(settled, RATE, frequency) == pytest.approx(0.25, rel=0.05)  # level 0.5
    assert snr_db(settled, RATE, frequency) > 20


def test_g722_needs_both_sub_bands() -> None:
    # A 1 kHz and a 6 kHz tone together: both come out (neither band is dropped).
    a = Tone(1000, RATE, 0.3).samples(4800)
    b = Tone(6000, RATE, 0.3).samples(4800)
    mixed = pcm(*(x + y for x, y in zip(values(a), values(b), strict=True)))
    out = g722_round_trip(mixed)[2 * 1600 :]
    assert goertzel(out, RATE, 1000) == pytest.approx(0.09, rel=0.1)
    assert goertzel(out, RATE, 6000) == pytest.approx(0.09, rel=0.1)
    assert goertzel(out, RATE, 3500) < 0.001


def test_g722_silence_stays_quiet() -> None:
    out = values(g722_round_trip(bytes(2 * 1600)))
    assert max(abs(v) for v in out) < 64


def reference_signal(count: int) -> bytes:
    """Integer-only (the same on every platform): a 1 kHz triangle, a square wave, noise
    from a linear congruential generator, loud and quiet stretches, and a full-scale
    burst that drives the codec into saturation."""
    seed = 12345
    out = []
    for i in range(count):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        noise = (seed >> 16) - 16384
        triangle = abs((i * 8000) % 32000 - 16000) - 8000
        square = 6000 if (i // 3) % 2 else -6000
        v = triangle + square + (noise if (i // 2000) % 2 else noise // 8)
        if 12000 <= i < 13000:
            v = 32767 if (i // 5) % 2 else -32768
        out.append(max(-32768, min(32767, v)))
    return pcm(*out)


def test_g722_encoder_is_bit_exact() -> None:
    # The expected bytes are those of the spandsp/libg722 G.722 code (which passes the
    # ITU-T test sequences) for the same input, computed once.
    coded = G722Encoder().encode(reference_signal(16000))
    assert coded[:24].hex() == "d6208420852284289d12b4338d279e14b1308d2b9915b733"
    assert hashlib.sha256(coded).hexdigest() == (
        "3a84c6f56a4c94ec849c99b969bc2d214a817c8c32cf20335a01b21b0fdc4576"
    )


def test_g722_decoder_is_bit_exact() -> None:
    # Every code, in an order that swings the predictors hard (and saturates the output);
    # expected values from the same reference as above.
    codes = bytes((i * 37 + (i >> 8)) & 0xFF for i in range(4096))
    out = G722Decoder().decode(codes)
    assert values(out[2000:2016]) == [27254, -11571, -32768, 32767, 763, 4190, -32768, 16443]
    assert hashlib.sha256(out).hexdigest() == (
        "23269c07060d285e7d39a4121b7bf0144e3415679fd767eb5fa72a4e8a714557"
    )


@given(st.lists(st.integers(0, 200), min_size=1, max_size=8))
def test_g722_encoder_keeps_state_across_calls(cuts: list[int]) -> None:
    # Any cut, an odd number of samples included, gives what one call gives.
    signal = reference_signal(sum(cuts) + 7)
    whole = G722Encoder().encode(signal)
    encoder = G722Encoder()
    pieces = []
    at = 0
    for cut in [*cuts, 7]:
        pieces.append(encoder.encode(signal[2 * at : 2 * (at + cut)]))
        at += cut
    assert b"".join(pieces) == whole[: (sum(cuts) + 7) // 2]
    assert len(whole) == (sum(cuts) + 7) // 2


@given(st.lists(st.integers(0, 100), min_size=1, max_size=8))
def test_g722_decoder_keeps_state_across_calls(cuts: list[int]) -> None:
    codes = G722Encoder().encode(reference_signal(2 * sum(cuts)))
    whole = G722Decoder().decode(codes)
    decoder = G722Decoder()
    pieces = []
    at = 0
    for cut in cuts:
        pieces.append(decoder.decode(codes[at : at + cut]))
        at += cut
    assert b"".join(pieces) == whole


def test_g722_frames_and_errors() -> None:
    encoder = G722Encoder()
    assert len(encoder.encode(bytes(640))) == 160  # 20 ms: 320 samples, 160 bytes
    assert encoder.encode(b"") == b""
    with pytest.raises(ValueError, match="odd length 5"):
        encoder.encode(bytes(5))
    assert len(G722Decoder().decode(bytes(160))) == 640
    assert G722Decoder().decode(b"") == b""


# ─── the uniform interface ───


def test_codec_for_names_rates_and_clocks() -> None:
    assert {"pcmu", "pcma", "g722"} == set(ENCODABLE)
    assert codec_for("pcmu") == Codec("pcmu", 8000, 8000)
    assert codec_for("PCMA") == Codec("pcma", 8000, 8000)
    # RFC 3551 §4.5.2: G.722 samples at 16 kHz, its RTP clock is 8000 Hz.
    assert codec_for("g722") == Codec("g722", 16000, 8000)
    assert codec_for("opus") is None
    assert codec_for("telephone-event") is None
    for name in ENCODABLE:
        codec = codec_for(name)
        assert codec is not None and codec.name == name
    with pytest.raises(ValueError, match="no codec 'opus' here"):
        Codec("opus", 48000, 48000).encoder()


@pytest.mark.parametrize("name", sorted(ENCODABLE))
def test_codec_encoder_and_decoder_round_trip_a_frame(name: str) -> None:
    codec = codec_for(name)
    assert codec is not None
    samples = codec.rate // 50  # 20 ms
    tone = Tone(1000, codec.rate, 0.5)
    encoder = codec.encoder()
    decoder = codec.decoder()
    out = b""
    for _ in range(10):
        payload = encoder.encode(tone.samples(samples))
        assert len(payload) == 160  # every one of them: 160 bytes, 160 clock ticks
        out += decoder.decode(payload)
    assert len(out) == 2 * 10 * samples
    assert dominant_frequency(out[len(out) // 2 :], codec.rate, 500, 1500) == 1000


def test_codec_g722_state_is_per_stream() -> None:
    codec = codec_for("g722")
    assert codec is not None
    first = codec.encoder()
    second = codec.encoder()
    assert first is not second
    frame = Tone(440, RATE).samples(320)
    first.encode(frame)
    # A fresh encoder is unaffected by the first one's history.
    assert second.encode(frame) == G722Encoder().encode(frame)
    assert codec.decoder() is not codec.decoder()


def test_codec_g711_matches_the_functions() -> None:
    frame = Tone(700, 8000).samples(160)
    for name, encode, decode in (("pcmu", ulaw_encode, ulaw_decode),
                                 ("pcma", alaw_encode, alaw_decode)):  # fmt: skip
        codec = codec_for(name)
        assert codec is not None
        assert codec.encoder().encode(frame) == encode(frame)
        assert codec.decoder().decode(encode(frame)) == decode(encode(frame))
