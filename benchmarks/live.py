"""Live mode: how soon ``/v1/stream`` names a new speaker (``whichvoice.serve.stream``), and
whether it names strangers.

Conversations of test-pool voices (as ``benchmarks/diarize.py`` makes them: test-pool
espeak-ng variants and the other engines' test voices, test sentences, clean, no overlap);
every other voice is enrolled from clips the conversations do not use, the rest are
strangers. Each conversation is fed to the live state (``LiveSpeakers``) as a microphone
would send it: 16-bit PCM in 0.1 s messages; its answers are collected with their times.
Reported for each encoder and each live rule, side by side on the same conversations:
- for every change to an enrolled voice, the delay from the new turn's start to the first
  answer naming it (a turn never named counts as not named within 1 s): the share named
  within 1 s (Wilson interval), the share named before the turn ends, the median delay;
- the share of answers inside enrolled voices' turns (0.5 s past their start) that name
  another voice;
- the share of answers inside strangers' turns that name an enrolled voice, and the
  strangers' turns with at least one such answer.
The rules: ``shipped`` (an answer every 0.1 s; the last window alone may name a voice at the
window threshold, the turn's mean at the turn threshold), ``stop35`` (the same, the turn's mean
held to the window threshold) and ``previous`` (every 0.25 s, named from the turn only: stop
33's, at today's answer pacing, one threshold). The thresholds are the shipped ones (the live
window and turn thresholds and the clustering distance, set on dev data by
``benchmarks/diarize.py``).

``--split dev`` streams conversations of dev-pool voices instead (the voices and clips of
``benchmarks/diarize.py``'s enrolled dev sets, conversations of their own; ``--draw`` is
ignored): where the live rule was chosen. ``--draw K``: the test draw, as
``benchmarks/diarize.py``'s. Draws 1-3 were looked at; draw 4 was reported at stops 32-34,
once between two versions of the shipped rule; draw 5, the default since, had been used only
by ``benchmarks/diarize.py``'s report, never by live mode.

    python benchmarks/live.py [--encoders auto,bundled] [--conversations 20] [--workdir DIR]
        [--split dev] [--draw 4]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from diarize import ENROLL_CLIPS, conversations, voice_clips
from provenance import RESULTS, provenance, write_result

from whichvoice.audio import SAMPLE_RATE
from whichvoice.encoders import load_encoder, model_id
from whichvoice.protocol import ENGINE_VOICES, pool_sentences, pool_voices
from whichvoice.prototypes import refs_from_clips
from whichvoice.scoring import proportion
from whichvoice.serve.stream import LiveSpeakers, live_thresholds

MESSAGE_S = 0.1
WITHIN_S = 1.0
RULES = {
    "shipped": {},
    "stop35": {},  # the shipped rule with turns held to the window threshold
    "previous": {"step_s": 0.25, "last_window": False, "new_voice_after_s": 0.5},
}


def stream(conv, rule: dict, encoder, refs, thresholds) -> list[tuple[float, str | None]]:
    """(t, speaker) of every answer to the conversation sent in 0.1 s messages."""
    state = LiveSpeakers(SAMPLE_RATE, **rule)
    pcm = (np.clip(conv.wave, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(MESSAGE_S * SAMPLE_RATE) * 2
    out = []
    for at in range(0, len(pcm), step):
        if state.feed(pcm[at : at + step]):
            speaker, _ = state.answer(encoder, refs, thresholds)
            out.append((state.received / SAMPLE_RATE, speaker))
    return out


def figures(convs, answers: list[list], enrolled: set[str]) -> dict:
    """The report's figures for one encoder and rule (see the module's docstring)."""
    delays, wrong, inside, strange, strange_n, strange_turns, stranger_turns = (
        [], 0, 0, 0, 0, 0, 0
    )  # fmt: skip
    for conv, heard in zip(convs, answers, strict=True):
        for k, turn in enumerate(conv.turns):
            during = [s for t, s in heard if turn.start + 0.5 <= t <= turn.end and s]
            if turn.voice not in enrolled:
                named = [s for s in during if s in enrolled]
                strange += len(named)
                strange_n += len(during)
                strange_turns += bool(named)
                stranger_turns += 1
                continue
            named = [t for t, s in heard if turn.start <= t <= turn.end and s == turn.voice]
            if k > 0 and conv.turns[k - 1].voice != turn.voice:
                delays.append(named[0] - turn.start if named else float("inf"))
            inside += len(during)
            wrong += sum(s != turn.voice for s in during)
    d = np.array(delays)
    return {
        "changes": len(d),
        "named_within_1s": proportion(int((d <= WITHIN_S).sum()), len(d)),
        "named_in_turn": proportion(int(np.isfinite(d).sum()), len(d)),
        "median_delay_s": float(np.median(d[np.isfinite(d)])) if np.isfinite(d).any()
        else None,
        "wrong_answers_in_turns": proportion(wrong, inside),
        "stranger_answers_named_enrolled": proportion(strange, strange_n),
        "stranger_turns_named_enrolled": proportion(strange_turns, stranger_turns),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="auto,bundled")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--espeak-voices", type=int, default=12)
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--json", type=Path, default=None, help="[results/live(-dev).json]")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--draw", type=int, default=5, help="test draw (1-4: looked at)")
    args = parser.parse_args()
    dest = args.json or RESULTS / ("live.json" if args.split == "test" else "live-dev.json")
    made = provenance()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-live-"))
        )
        if args.split == "dev":  # diarize.py's dev voices, enrolled clips and all
            voices = pool_voices("dev", args.espeak_voices, start=70_000)
            folder, sentences, seed = work / "dev-enrolled", pool_sentences("dev", 300), 4242
        else:
            voices = pool_voices(
                "test", args.espeak_voices, start=70_000 + 1_000 * (args.draw - 1)
            ) + list(ENGINE_VOICES["test"])
            folder = work / ("test" if args.draw == 1 else f"test-draw{args.draw}")
            sentences = pool_sentences("test", 300, seed=args.draw - 1)
            seed = 700 + 10 * (args.draw - 1)
        clips = voice_clips(folder, voices, sentences, 6 + ENROLL_CLIPS)
        enrolled = set(sorted(clips)[::2])  # as benchmarks/diarize.py enrolls its voices
        convs = conversations({v: p[ENROLL_CLIPS:] for v, p in clips.items()},
                              args.conversations, 0.0, seed=seed)  # fmt: skip
    report = {}
    for name in args.encoders.split(","):
        encoder = load_encoder(name)
        refs = refs_from_clips(encoder, {v: clips[v][:ENROLL_CLIPS] for v in enrolled})
        shipped = live_thresholds(encoder)
        report[name] = {
            "encoder": model_id(encoder),
            "live_threshold": shipped.accept,
            "live_turn_threshold": shipped.turn_accept,
            "rules": {},
        }
        for rule, kwargs in RULES.items():
            # the earlier rules held turns to the window threshold
            thresholds = shipped if rule == "shipped" else replace(shipped, turn_accept=None)
            heard = [stream(c, kwargs, encoder, refs, thresholds) for c in convs]
            report[name]["rules"][rule] = figures(convs, heard, enrolled)
            print(name, rule, report[name]["rules"][rule], flush=True)
    result = {
        "benchmark": "live",
        **made,
        "command": "python benchmarks/live.py " + " ".join(sys.argv[1:]),
        "split": args.split,
        **({"test_draw": args.draw} if args.split == "test" else {}),
        "conversations": len(convs),
        "audio_seconds": sum(c.duration_s for c in convs),
        "voices": {"enrolled": len(enrolled), "strangers": len(clips) - len(enrolled)},
        "rules": {"shipped": "an answer every 0.1 s; the last window alone may name a voice "
                    "at the window threshold, the turn's mean at the turn threshold",
                  "stop35": "the shipped rule with the turn's mean held to the window threshold "
                    "(stop 35's)",
                  "previous": "an answer every 0.25 s; named from the turn only (stop 33's, at "
                    "today's answer pacing)"},
        "results": report,
        "target": {"named_within_1s": 1.0, "stranger_turns_named_enrolled": 0.0},
    }  # fmt: skip
    write_result(dest, result)
    print(f"-> {dest}")


if __name__ == "__main__":
    main()
