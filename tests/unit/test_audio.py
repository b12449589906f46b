"""Linear PCM: tones, silence, WAV files, resampling, and measuring a frequency."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipresponder.core.audio import (
    Tone,
    dominant_frequency,
    goertzel,
    read_wav,
    resample,
    silence,
    write_wav,
)
from sipresponder.core.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def values(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


# ─── Tone and silence ───


def test_tone_frames_join_without_a_break() -> None:
    # 20 ms frames of a 440 Hz tone are one continuous sine, sample for sample.
    frames = Tone(440, 8000)
    joined = b"".join(frames.samples(160) for _ in range(50))
    assert joined == Tone(440, 8000).samples(8000)
    # ... and uneven pieces too.
    pieces = Tone(1234.5, 16000)
    parts = b"".join(pieces.samples(n) for n in (1, 0, 7, 319, 320, 33))
    assert parts == Tone(1234.5, 16000).samples(680)


def test_tone_is_the_sine_it_says() -> None:
    out = values(Tone(1000, 8000, 0.5).samples(16))
    expected = [round(0.5 * 32767 * math.sin(2 * math.pi * 1000 * n / 8000)) for n in range(16)]
    assert out == expected
    assert out[0] == 0  # starts at a zero crossing: no click


def test_tone_phase_does_not_drift() -> None:
    # 1 kHz at 8 kHz is 8 samples a cycle: after a minute it is still the same 8 samples.
    tone = Tone(1000, 8000)
    first = tone.samples(8)
    for _ in range(60):
        tone.samples(8000)
    assert tone.samples(8) == first
    # 440.5 Hz at 8000 Hz repeats exactly every 16000 samples (881 cycles).
    tone = Tone(440.5, 8000)
    assert tone.samples(16000) == tone.samples(16000)


@pytest.mark.parametrize(("frequency", "rate"), [(440, 8000), (1000, 8000), (3000, 16000)])
def test_tone_frequency_and_level(frequency: int, rate: int) -> None:
    data = Tone(frequency, rate, 0.25).samples(rate // 10)
    assert dominant_frequency(data, rate, 100, rate / 2 - 100) == frequency
    assert goertzel(data, rate, frequency) == pytest.approx(0.25**2, rel=0.01)
    assert max(values(data)) == round(0.25 * 32767)


@pytest.mark.parametrize(
    ("frequency", "rate", "level", "message"),
    [
        (0, 8000, 0.25, "frequency 0 Hz is not between 0 and 4000 Hz"),
        (-5, 8000, 0.25, "frequency -5 Hz"),
        (4000, 8000, 0.25, "frequency 4000 Hz is not between 0 and 4000 Hz"),
        (9000, 16000, 0.25, "frequency 9000 Hz is not between 0 and 8000 Hz"),
        (math.nan, 8000, 0.25, "frequency nan Hz"),
        (440, 0, 0.25, "sample rate 0 Hz is not positive"),
        (440, 8000, 1.5, "level 1.5 is not between 0 and 1"),
        (440, 8000, -0.1, "level -0.1"),
    ],
)
def test_tone_rejects(frequency: float, rate: int, level: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tone(frequency, rate, level)


def test_tone_counts() -> None:
    tone = Tone(440, 8000)
    assert tone.samples(0) == b""
    assert len(tone.samples(160)) == 320
    with pytest.raises(ValueError, match="negative sample count -1"):
        tone.samples(-1)


def test_silence() -> None:
    assert silence(160) == bytes(320)
    assert silence(0) == b""
    with pytest.raises(ValueError, match="negative sample count -2"):
        silence(-2)


# ─── WAV files ───


def chunk(name: bytes, body: bytes) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return name + struct.pack("<I", len(body)) + body + pad


def fmt(code: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return chunk(b"fmt ", struct.pack("<HHIIHH", code, channels, rate, rate * block, block, bits))


def extensible(subformat: int, channels: int, rate: int, bits: int, tail: bytes) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
    body += struct.pack("<HHI", 22, bits, 0x4 if channels == 1 else 0x3)
    return chunk(b"fmt ", body + struct.pack("<H", subformat) + tail)


GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_read_wav_pcm16_mono() -> None:
    samples = pcm(0, 1, -1, 32767, -32768, 1234)
    assert read_wav(riff(fmt(1, 1, 8000, 16), chunk(b"data", samples))) == (8000, samples)


def test_read_wav_pcm8_is_unsigned() -> None:
    data = bytes([0, 1, 127, 128, 129, 255])
    rate, out = read_wav(riff(fmt(1, 1, 11025, 8), chunk(b"data", data)))
    assert rate == 11025
    assert values(out) == [-32768, -32512, -256, 0, 256, 32512]


@pytest.mark.parametrize(("code", "encode", "decode"), [(6, alaw_encode, alaw_decode),
                                                        (7, ulaw_encode, ulaw_decode)])  # fmt: skip
def test_read_wav_g711(
    code: int, encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    coded = encode(pcm(0, 100, -100, 20000, -20000, 32767))
    rate, out = read_wav(riff(fmt(code, 1, 8000, 8), chunk(b"data", coded)))
    assert rate == 8000
    assert out == decode(coded)
    assert values(out)[3] == pytest.approx(20000, rel=0.03)


def test_read_wav_stereo_is_mixed_down() -> None:
    left_right = pcm(100, 300, -100, -301, 32767, 32767, -32768, -32768, 1, 0)
    _, out = read_wav(riff(fmt(1, 2, 16000, 16), chunk(b"data", left_right)))
    assert values(out) == [200, -201, 32767, -32768, 0]  # the mean, rounded down
    _, out = read_wav(riff(fmt(1, 2, 8000, 8), chunk(b"data", bytes([128, 130, 0, 255]))))
    assert values(out) == [256, -128]
    coded = ulaw_encode(pcm(1000, 3000))
    _, out = read_wav(riff(fmt(7, 2, 8000, 8), chunk(b"data", coded)))
    assert values(out) == [sum(values(ulaw_decode(coded))) >> 1]


def test_read_wav_skips_other_chunks() -> None:
    samples = pcm(5, -5, 7)
    data = riff(
        chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00Lavf\x00"),  # odd size: a pad byte follows
        fmt(1, 1, 8000, 16),
        chunk(b"fact", struct.pack("<I", 3)),
        chunk(b"junk", b"x"),
        chunk(b"data", samples),
        chunk(b"id3 ", b"tag"),
    )
    assert read_wav(data) == (8000, samples)
    # The data chunk may come before the fmt chunk.
    assert read_wav(riff(chunk(b"data", samples), fmt(1, 1, 8000, 16))) == (8000, samples)


def test_read_wav_extensible() -> None:
    samples = pcm(1, 2, 3, 4)
    data = riff(extensible(1, 1, 48000, 16, GUID_TAIL), chunk(b"data", samples))
    assert read_wav(data) == (48000, samples)
    coded = bytes([0xD5, 0x2A])
    data = riff(extensible(6, 1, 8000, 8, GUID_TAIL), chunk(b"data", coded))
    assert read_wav(data) == (8000, alaw_decode(coded))
    # IEEE float, as extensible: the sub-format's code is read, and refused.
    with pytest.raises(ValueError, match="WAV: unsupported format 3 "):
        read_wav(riff(extensible(3, 1, 8000, 32, GUID_TAIL), chunk(b"data", samples)))
    other = riff(extensible(1, 1, 8000, 16, b"\x01" * 14), chunk(b"data", samples))
    with pytest.raises(ValueError, match="unsupported extensible sub-format 0100010101"):
        read_wav(other)
    short = riff(chunk(b"fmt ", struct.pack("<HHIIHH", 0xFFFE, 1, 8000, 16000, 2, 16)))
    with pytest.raises(ValueError, match=r"extensible fmt chunk too short \(16 bytes"):
        read_wav(short)


def test_read_wav_truncated_data_up_to_the_last_whole_sample() -> None:
    samples = pcm(10, 20, 30)
    # The data chunk says 100 bytes, the file ends one byte into the fourth sample.
    data = riff(fmt(1, 1, 8000, 16)) + b"data" + struct.pack("<I", 100) + samples + b"\x07"
    assert read_wav(data) == (8000, samples)
    # Stereo: the last whole frame (both channels).
    stereo = riff(fmt(1, 2, 8000, 16), chunk(b"data", pcm(10, 20, 30)))
    assert read_wav(stereo) == (8000, pcm(15))
    # An empty data chunk is an empty sound.
    assert read_wav(riff(fmt(1, 1, 8000, 16), chunk(b"data", b""))) == (8000, b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV file: no RIFF header"),
        (b"RIFX\x00\x00\x00\x00WAVE", "not a WAV file: no RIFF header"),
        (b"ID3\x04" + bytes(40), "not a WAV file: no RIFF header"),
        (b"RIFF\x04\x00\x00\x00AVI ", "not a WAV file: the RIFF form is b'AVI ', not WAVE"),
        (riff(chunk(b"data", b"\x00\x00")), "WAV: no fmt chunk"),
        (riff(chunk(b"fmt ", b"\x01\x00\x01\x00")), r"WAV: fmt chunk too short \(4 bytes"),
        (riff(fmt(1, 1, 8000, 16)), "WAV: no data chunk"),
        (
            riff(fmt(85, 1, 8000, 16), chunk(b"data", b"")),
            r"WAV: unsupported format 85 \(only PCM 8/16-bit, A-law, mu-law\)",
        ),
        (riff(fmt(3, 1, 8000, 32), chunk(b"data", b"")), "WAV: unsupported format 3 "),
        (
            riff(fmt(1, 1, 8000, 24), chunk(b"data", b"")),
            r"WAV: unsupported PCM sample size 24 bits \(only 8 and 16\)",
        ),
        (riff(fmt(6, 1, 8000, 16), chunk(b"data", b"")), "WAV: A-law with 16 bits per sample"),
        (riff(fmt(7, 1, 8000, 4), chunk(b"data", b"")), "WAV: mu-law with 4 bits per sample"),
        (
            riff(fmt(1, 3, 8000, 16), chunk(b"data", b"")),
            r"WAV: unsupported channel count 3 \(only mono or stereo\)",
        ),
        (riff(fmt(1, 0, 8000, 16), chunk(b"data", b"")), "WAV: unsupported channel count 0"),
        (riff(fmt(1, 1, 0, 16), chunk(b"data", b"")), "WAV: sample rate 0"),
    ],
)
def test_read_wav_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_wav(data)


def test_write_wav_layout() -> None:
    data = write_wav(pcm(1, -2), 16000)
    assert data == (
        b"RIFF" + struct.pack("<I", 40) + b"WAVE"
        b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data" + struct.pack("<I", 4) + pcm(1, -2)
    )  # fmt: skip
    with pytest.raises(ValueError, match="WAV: odd PCM length 3"):
        write_wav(b"\x00\x00\x00", 8000)
    with pytest.raises(ValueError, match="WAV: sample rate 0 Hz is not positive"):
        write_wav(b"", 0)


@given(st.lists(st.integers(-32768, 32767), max_size=300), st.sampled_from([8000, 16000, 44100]))
def test_write_wav_read_wav_round_trip(samples: list[int], rate: int) -> None:
    assert read_wav(write_wav(pcm(*samples), rate)) == (rate, pcm(*samples))


# ─── resampling ───


def test_resample_identity_and_lengths() -> None:
    tone = Tone(440, 8000).samples(160)
    assert resample(tone, 8000, 8000) == tone
    assert len(resample(tone, 8000, 16000)) == 2 * 320
    assert len(resample(Tone(440, 16000).samples(320), 16000, 8000)) == 2 * 160
    assert len(resample(bytes(2 * 44100), 44100, 8000)) == 2 * 8000
    assert len(resample(bytes(2 * 441), 44100, 8000)) == 2 * 80
    assert resample(b"", 8000, 16000) == b""


def test_resample_interpolates_linearly() -> None:
    assert values(resample(pcm(0, 100, -100), 8000, 16000)) == [0, 50, 100, 0, -100, -100]
    assert values(resample(pcm(0, 10, 20, 30, 40, 50), 16000, 8000)) == [0, 20, 40]
    assert values(resample(pcm(0, 90), 2, 3)) == [0, 60, 90]  # positions 0, 2/3, 4/3
    # Rounded to the nearest: 33.3 and 66.7.
    assert values(resample(pcm(0, 100), 3, 9)) == [0, 33, 67, 100, 100, 100]


@pytest.mark.parametrize(("source", "target"), [(8000, 16000), (16000, 8000), (44100, 8000)])
def test_resample_keeps_the_pitch(source: int, target: int) -> None:
    out = resample(Tone(1000, source, 0.5).samples(source // 5), source, target)
    assert dominant_frequency(out, target, 100, 3900) == 1000
    # Going up, the new samples between two old ones fall on their chord, inside the
    # sine: 1 kHz from 8 kHz loses about 7 % of its power.
    assert goertzel(out, target, 1000) == pytest.approx(0.25, rel=0.1)


@given(
    st.lists(st.integers(-32768, 32767), max_size=200),
    st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    st.sampled_from([8000, 16000, 48000]),
)
def test_resample_length_and_range(samples: list[int], source: int, target: int) -> None:
    out = values(resample(pcm(*samples), source, target))
    assert len(out) == len(samples) * target // source
    if out:  # interpolation never overshoots
        assert min(samples) <= min(out) and max(out) <= max(samples)


def test_resample_errors() -> None:
    with pytest.raises(ValueError, match=r"resample: rates must be positive \(0 -> 8000\)"):
        resample(b"", 0, 8000)
    with pytest.raises(ValueError, match="resample: odd PCM length 1"):
        resample(b"\x00", 8000, 16000)


# ─── measuring a frequency ───


def test_goertzel_scale() -> None:
    full = pcm(*(round(32767 * math.sin(2 * math.pi * 500 * n / 8000)) for n in range(800)))
    assert goertzel(full, 8000, 500) == pytest.approx(1.0, rel=0.001)
    assert goertzel(full, 8000, 1500) < 1e-6
    assert goertzel(silence(800), 8000, 500) == 0.0
    assert goertzel(b"", 8000, 500) == 0.0
    with pytest.raises(ValueError, match="goertzel: odd PCM length 3"):
        goertzel(b"\x00\x00\x00", 8000, 500)
    with pytest.raises(ValueError, match="goertzel: sample rate 0 Hz"):
        goertzel(b"", 0, 500)


def test_dominant_frequency() -> None:
    two = values(Tone(700, 8000, 0.1).samples(1600))
    loud = values(Tone(2300, 8000, 0.4).samples(1600))
    mixed = pcm(*(a + b for a, b in zip(two, loud, strict=True)))
    assert dominant_frequency(mixed, 8000) == 2300
    assert dominant_frequency(mixed, 8000, 100, 1000) == 700  # only where it looks
    assert dominant_frequency(silence(160), 8000) == 100
    with pytest.raises(ValueError, match="step 0 Hz is not positive"):
        dominant_frequency(mixed, 8000, step=0)
    with pytest.raises(ValueError, match="no frequencies from 500 to 400 Hz"):
        dominant_frequency(mixed, 8000, 500, 400)
