"""Festival: diphone and HTS voices, driven through one long-lived process per voice and worker.

Starting festival and loading a voice costs ~0.25 s (more for HTS), far more than speaking a
short sentence, so a session keeps a ``festival --pipe`` process per voice and feeds it Scheme.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from whichvoice.audio import read_audio
from whichvoice.errors import EngineFaultError, SynthesisError
from whichvoice.voices._process import TIMEOUT_S
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice, missing_program
from whichvoice.voices.registry import register_engine

VOICE_ROOT = Path("/usr/share/festival/voices")

# (name, gender, accent, rate in Hz, description, Debian package). The non-English voices
# are real speakers too: they read English text with their own language's letter-to-sound
# rules, which makes them useful extra speakers for training and testing voice encoders.
_TABLE = [
    ("kal_diphone", "male", "en-US", 16_000, "kal diphone", "festvox-kallpc16k"),
    ("ked_diphone", "male", "en-US", 16_000, "ked diphone", "festvox-kdlpc16k"),
    (
        "cmu_us_slt_arctic_hts",
        "female",
        "en-US",
        32_000,
        "CMU ARCTIC slt, HTS",
        "festvox-us-slt-hts",
    ),
    ("rab_diphone", "male", "en-GB", 16_000, "rab diphone", "festvox-rablpc16k"),
    ("don_diphone", "male", "en-GB", 10_000, "don diphone", "festvox-don"),
    ("lp_diphone", "female", "it-IT", 16_000, "Italian lp diphone", "festvox-italp16k"),
    ("pc_diphone", "male", "it-IT", 16_000, "Italian pc diphone", "festvox-itapc16k"),
    ("upc_ca_ona_hts", "female", "ca-ES", 16_000, "Catalan ona, HTS", "festvox-ca-ona-hts"),
    ("czech_dita", "female", "cs-CZ", 32_000, "Czech dita", "festvox-czech-dita"),
    ("czech_krb", "male", "cs-CZ", 32_000, "Czech krb (a child)", "festvox-czech-krb"),
    ("czech_machac", "male", "cs-CZ", 32_000, "Czech machac", "festvox-czech-machac"),
    ("czech_ph", "male", "cs-CZ", 44_100, "Czech ph", "festvox-czech-ph"),
    ("msu_ru_nsh_clunits", "male", "ru-RU", 16_000, "Russian nsh, clunits", "festvox-ru"),
    ("suo_fi_lj_diphone", "female", "fi-FI", 22_050, "Finnish lj diphone", "festvox-suopuhe-lj"),
    ("hy_fi_mv_diphone", "male", "fi-FI", 22_050, "Finnish mv diphone", "festvox-suopuhe-mv"),
    # `make bench-voices` (benchmarks/trace.py's extra diphone speaker)
    ("el_diphone", "male", "es-ES", 11_025, "Spanish el diphone", "festvox-ellpc11k"),
]
_VOICES = [
    Voice("festival", name, gender, accent, rate, f"{about} ({package})")
    for name, gender, accent, rate, about, package in _TABLE
]
_PACKAGES = {name: package for name, *_, package in _TABLE}
# in Debian contrib, which `make voices` enables for these packages only
_CONTRIB = {"festvox-rablpc16k", "festvox-don"}
_BENCH = {"festvox-ellpc11k"}  # installed by `make bench-voices`


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _FestivalProcess:
    """One ``festival --pipe`` with one voice loaded; commands end with a marker we wait for."""

    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self._count = 0
        self._buf = b""
        self.proc = subprocess.Popen(
            ["festival", "--pipe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.command(f"(voice_{voice.name})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def command(self, scheme: str) -> str:
        """Send ``scheme``, wait until festival has run it; returns what it printed meanwhile."""
        self._count += 1
        marker = f"<<whichvoice-done-{self._count}>>".encode()
        payload = f'{scheme}\n(format t "{marker.decode()}\\n")\n(fflush nil)\n'
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(payload.encode("latin-1", "replace"))
            self.proc.stdin.flush()
        except OSError as e:
            raise EngineFaultError(f"{self.voice.id}: festival stopped ({e})") from e
        return self._read_until(marker)

    def _read_until(self, marker: bytes) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while marker not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise EngineFaultError(f"{self.voice.id}: festival timed out")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    said = self._buf.decode("latin-1").strip().splitlines()
                    detail = said[-1] if said else f"exit status {self.proc.wait()}"
                    raise EngineFaultError(f"{self.voice.id}: festival stopped ({detail})")
                self._buf += chunk
        before, _, self._buf = self._buf.partition(marker)
        return before.decode("latin-1")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# festival processes a session keeps (one per voice, ~300 MB each with an HTS or clunits
# voice): a session that has spoken with many voices closes the one used longest ago
MAX_PROCESSES = 4


class FestivalSession(EngineSession):
    def __init__(self) -> None:
        self._procs: dict[str, _FestivalProcess] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="whichvoice-festival-")

    def _process(self, voice: Voice) -> _FestivalProcess:
        proc = self._procs.pop(voice.name, None)  # taken out, put back last: the newest
        if proc is None or not proc.alive():
            while len(self._procs) >= MAX_PROCESSES:  # the one used longest ago goes
                self._procs.pop(next(iter(self._procs))).close()
            proc = _FestivalProcess(voice)
        self._procs[voice.name] = proc
        return proc

    def synthesize(self, voice: Voice, text: str) -> Speech:
        """``text`` in ``voice``. Some voices' question intonation fails on some sentences
        (the Italian diphone voices on an English question of several words: "SIOD ERROR:
        wrong type of argument to get_c_val"); a question that gives no audio is read again
        as a statement."""
        if not any(c.isascii() and c.isalnum() for c in text):
            # festival crashes (a segmentation fault) on text without a word it reads
            raise SynthesisError(
                f"{voice.id} on {text!r}: nothing to speak (festival needs a letter or digit "
                "of the English alphabet)"
            )
        wave = self._say(voice, text)
        if isinstance(wave, str) and "?" in text:
            wave = self._say(voice, text.replace("?", "."))
        if isinstance(wave, str):
            raise SynthesisError(f"{voice.id}: festival wrote no audio ({wave[:200]})")
        return Speech(*wave)

    def _say(self, voice: Voice, text: str) -> tuple[np.ndarray, int] | str:
        """The waveform and its rate, or the errors festival printed instead of audio."""
        out = Path(self._tmp.name) / "out.wav"
        out.unlink(missing_ok=True)
        said = self._process(voice).command(
            f"(utt.save.wave (SynthText {_scheme_string(text)}) {_scheme_string(str(out))} 'riff)"
        )
        if not out.exists() or out.stat().st_size <= 44:
            lines = [line.strip() for line in said.splitlines() if line.strip()]
            errors = [line for line in lines if "error" in line.lower()]
            # festival's words when none says "error" (a Russian voice's "LTS_Ruleset
            # russian_downcase: no rule matches: ..." was dropped: "wrote no audio ()")
            return " ".join(errors or lines[-2:]) or "festival said nothing"
        return read_audio(out.read_bytes(), name=f"{voice.id} on {text!r}")

    def close(self) -> None:
        for proc in self._procs.values():
            proc.close()
        self._procs.clear()
        self._tmp.cleanup()


@register_engine
class FestivalEngine(Engine):
    name = "festival"
    packages = ("festival",)

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        return missing_program("festival", "festival")

    def voice_unavailable_reason(self, voice: Voice) -> str | None:
        reason = self.unavailable_reason()
        if reason:
            return reason
        if not any((lang / voice.name).is_dir() for lang in VOICE_ROOT.glob("*")):
            package = _PACKAGES[voice.name]
            if package in _CONTRIB:
                how = f"Debian contrib {package}; `make voices` installs it"
            elif package in _BENCH:
                how = f"Debian non-free {package}; `make bench-voices` installs it"
            else:
                how = f"package {package}"
            return f"festival voice {voice.name} is not installed ({how})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return FestivalSession()
