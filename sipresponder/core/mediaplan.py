"""What an answered call does with its media: the mode, read from a rule, a dialled code
or the CLI.

What belongs here: ``MediaMode`` (``echo``, ``tone`` with its frequency, ``silence``,
``play`` with its audio, ``record`` with its folder, ``none``), ``parse_media`` (the
rules' ``media:`` value, checked, with a one-line error naming the field) and
``dialled_media`` (the keypad form, ``*0`` then a digit).  A ``play`` file is read here,
once, when the rules are loaded, and converted to plain 16-bit samples (``audio``); it is
resampled to a codec's rate when a call first needs that rate.  What a session does with
the mode is ``media``'s.  Imports ``errors`` and ``audio`` only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

from ..errors import ConfigError
from .audio import Tone, read_wav, resample, silence
from .codecs import codec_for

KINDS: Final = ("echo", "tone", "silence", "play", "record", "none")
#: The tone's frequency when none is given, Hz.
TONE_HZ: Final = 1000.0
#: A WAV file to play is read whole: at most this many bytes.
MAX_PLAY_BYTES: Final = 64 * 1024 * 1024
#: A tone's packets repeat once its period and the packet's length line up: at most this
#: many packets are encoded (5 s at 20 ms); a tone that does not line up by then jumps
#: in phase once a cycle.
MAX_TONE_FRAMES: Final = 250


class MediaMode:
    """One way of answering a call's media.  Shared by every call that uses it, so the
    audio of ``play`` is read and converted once."""

    __slots__ = ("_by_rate", "_frames", "directory", "frequency", "kind", "pcm", "rate", "source")

    def __init__(
        self,
        kind: str,
        *,
        frequency: float = TONE_HZ,
        pcm: bytes = b"",
        rate: int = 0,
        directory: str = "",
        source: str = "",
    ) -> None:
        self.kind = kind
        self.frequency = frequency
        #: ``play``: mono 16-bit samples at ``rate``.
        self.pcm = pcm
        self.rate = rate
        #: ``record``: the folder that gets one WAV file per call.
        self.directory = directory
        #: ``play``: the file's name, for the journal.
        self.source = source
        self._by_rate: dict[int, bytes] = {}
        self._frames: dict[tuple[str, int], list[bytes]] = {}

    @property
    def sends(self) -> bool:
        """Whether this mode sends audio of its own (and so needs a codec it can encode)."""
        return self.kind in ("tone", "silence", "play")

    def audio_at(self, rate: int) -> bytes:
        """``play``'s samples at ``rate`` Hz, converted once per rate."""
        pcm = self._by_rate.get(rate)
        if pcm is None:
            pcm = self._by_rate[rate] = resample(self.pcm, self.rate, rate)
        return pcm

    def frames(self, encoding: str, ptime: int) -> list[bytes]:
        """The payloads this mode sends in ``encoding`` with ``ptime`` ms packets, in the
        order they go, looped: encoded once per codec and packet time, and shared by every
        call (a packet then costs its header alone).  [] when we cannot encode it."""
        key = (encoding, ptime)
        frames = self._frames.get(key)
        if frames is not None:
            return frames
        codec = codec_for(encoding)
        if codec is None or not self.sends:
            return []
        size = codec.rate * ptime // 1000  # samples per packet
        if self.kind == "silence":
            pcm = silence(size)
        elif self.kind == "tone":
            period = _period(self.frequency, codec.rate)
            count = period // math.gcd(period, size)  # packets until the phase lines up
            pcm = Tone(self.frequency, codec.rate).samples(size * min(count, MAX_TONE_FRAMES))
        else:
            pcm = self.audio_at(codec.rate)
            whole = -(-len(pcm) // (2 * size)) * 2 * size
            pcm = pcm + bytes(whole - len(pcm))  # the last packet padded with silence
        encoder = codec.encoder()
        # A stateful codec (G.722's ADPCM) is warmed up on one pass of the loop first, so
        # that the loop's end leads into its start as the encoder expects.
        encoder.encode(pcm)
        data = encoder.encode(pcm)
        step = len(data) * 2 * size // len(pcm)
        frames = [data[i : i + step] for i in range(0, len(data), step)]
        self._frames[key] = frames
        return frames

    def describe(self) -> str:
        if self.kind == "tone":
            return f"tone {self.frequency:g} Hz"
        if self.kind == "play":
            return f"play {self.source}"
        if self.kind == "record":
            return f"record to {self.directory}"
        return self.kind

    def __repr__(self) -> str:
        return f"MediaMode({self.describe()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MediaMode) and (
            self.kind,
            self.frequency,
            self.source,
            self.directory,
        ) == (other.kind, other.frequency, other.source, other.directory)

    def __hash__(self) -> int:
        return hash((self.kind, self.frequency, self.source, self.directory))


def _period(frequency: float, rate: int) -> int:
    """Samples after which a sine of ``frequency`` repeats exactly at ``rate`` (a whole
    number of Hz repeats after rate / gcd(rate, Hz); another, never: a large number)."""
    if frequency != int(frequency):
        return MAX_TONE_FRAMES * rate
    return rate // math.gcd(rate, int(frequency))


ECHO: Final = MediaMode("echo")
NONE: Final = MediaMode("none")
SILENCE: Final = MediaMode("silence")
TONE: Final = MediaMode("tone")


def _frequency(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 20 <= value <= 7000:
        raise ConfigError(f"{field}: the tone's frequency must be a number of Hz from 20 to 7000")
    return float(value)


def parse_media(value: Any, field: str = "media", base: Path | None = None) -> MediaMode:
    """A rule's or the CLI's ``media`` value: ``echo | tone | silence | none |
    {tone: HZ} | {play: FILE} | {record: DIR}``.  A relative path is taken from ``base``
    (the rules file's folder).  ``ConfigError`` with one line naming ``field``."""
    if isinstance(value, str):
        if value in ("echo", "silence", "none"):
            return MediaMode(value)
        if value == "tone":
            return TONE
        if value in ("play", "record"):
            raise ConfigError(f"{field}: {value} needs a path: {{{value}: PATH}}")
        raise ConfigError(f"{field}: {value!r} is not a media mode (one of {', '.join(KINDS)})")
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "__line__"}  # the rules' line mark
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(
            f"{field}: must be echo, tone, silence, none, {{tone: HZ}}, {{play: FILE}} "
            "or {record: DIR}"
        )
    ((kind, arg),) = value.items()
    if kind == "tone":
        return MediaMode("tone", frequency=_frequency(arg, f"{field}.tone"))
    if kind in ("play", "record"):
        if not isinstance(arg, str) or not arg:
            raise ConfigError(f"{field}.{kind}: must be a path")
        path = Path(arg).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if kind == "record":
            if not path.is_dir():
                raise ConfigError(f"{field}.record: {path}: not a folder")
            return MediaMode("record", directory=str(path))
        return _play(path, f"{field}.play")
    raise ConfigError(f"{field}: {kind!r} is not a media mode (one of {', '.join(KINDS)})")


def _play(path: Path, field: str) -> MediaMode:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PLAY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{field}: {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PLAY_BYTES:
        raise ConfigError(f"{field}: {path}: larger than {MAX_PLAY_BYTES >> 20} MiB")
    try:
        rate, pcm = read_wav(data)
    except ValueError as exc:
        raise ConfigError(f"{field}: {path}: {exc}") from None
    if not pcm:
        raise ConfigError(f"{field}: {path}: no audio in it")
    return MediaMode("play", pcm=pcm, rate=rate, source=str(path))


def dialled_media(part: str) -> MediaMode:
    """The keypad form, the digits after ``*0``: ``0`` none, ``1`` echo, ``2`` a 1 kHz
    tone or ``2HZ`` another, ``3`` silence.  ``ConfigError`` for anything else."""
    if not part or not part.isascii() or not part.isdigit():
        raise ConfigError(f"*0{part}: not a media code: *00 to *03")
    kind, rest = part[0], part[1:]
    if kind == "2":
        return (
            TONE if not rest else MediaMode("tone", frequency=_frequency(int(rest), f"*02{rest}"))
        )
    if rest:
        raise ConfigError(f"*0{part}: *0{kind} takes no digits after it")
    mode = {"0": NONE, "1": ECHO, "3": SILENCE}.get(kind)
    if mode is None:
        raise ConfigError(f"*0{part}: not a media code: *00 to *03")
    return mode
