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
  strangers' turns with at least one such answer;
- for every change to a stranger, whether it is answered with an unknown voice
  (``unknown-N``) within 1 s and before its turn ends (since stop 57).
The rules: ``shipped`` (an answer every 0.1 s; the last window alone may name a voice at the
window threshold, or at its own threshold for a window of less speech where the encoder has
those, the turn's mean at the turn threshold), ``one-threshold`` (the same with one window
threshold whatever the window's speech: the shipped rule until stop 52), ``stop35`` (one window
threshold, the turn's mean held to it), ``previous`` (every 0.25 s, named from the turn only:
stop 33's, at today's answer pacing, one threshold); on dev ``streak M`` for each margin M of
``STREAK_MARGINS`` (tried at stop 57: the rule shipped after the speech thresholds' choice with
an unknown voice also started once speech has been answered with no one for a second, when
the mean of those windows scores M under every enrolled voice's window threshold; a voice whose
windows a second apart drift past the join distance restarts its turn all along, and the rule
without it never starts it), and on test ``no-streak`` (the shipped rule without a margin).
``--write`` ships the margin (``LiveThresholds.unnamed_streak``) that ``chosen_streak`` picks
for each encoder by the rule fixed before its run (stop 58); the earlier rules never have it.

*Speech thresholds* (stop 52): a window with less speech scores lower against its own voice and
against others alike, so a window of 0.4-0.8 s of speech (the first answers of a turn after a
pause) has its own threshold at the same false acceptances (``speech_thresholds``: dev windows,
also with their start silenced as a pause before a turn leaves it). With ``--split dev`` they are
set on the dev voices and compared with one threshold on the dev conversations; ``--write``
ships them (``data/diarize/live-speech.json``) for each encoder whose dev figures meet the rule
fixed before their first run (``adopts``). The thresholds are the shipped ones (the live
window and turn thresholds and the clustering distance, set on dev data by
``benchmarks/diarize.py``).

``--split dev`` streams conversations of dev-pool voices instead (the voices and clips of
``benchmarks/diarize.py``'s enrolled dev sets, conversations of their own; ``--draw`` is
ignored): where the live rule was chosen. ``--draw K``: the test draw, as
``benchmarks/diarize.py``'s. Draws 1-3 were looked at; draw 4 was reported at stops 32-34,
once between two versions of the shipped rule; draw 5, live mode's default from stop 35 to
51, had been used before only by ``benchmarks/diarize.py``'s report; draw 12, the default
from stop 52's speech thresholds, had been used by no run (its voices start at 81,000),
until stop 58 looked at it before its second choice of the unnamed-streak margin, which
draw 13 (the default since, and live.json's) then tested. Every draw up to 13 has been
looked at: a fresh test asks for ``--draw 14`` or later.

    python benchmarks/live.py [--encoders auto,bundled] [--conversations 20] [--workdir DIR]
        [--split dev [--write]] [--draw 13]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from diarize import ENROLL_CLIPS, LIVE_FAR, conversations, held_out_waves, voice_clips
from human import joined_clips
from provenance import RESULTS, provenance, write_result

from whichvoice.audio import SAMPLE_RATE
from whichvoice.diarize import LIVE_SPEECH
from whichvoice.encoders import load_encoder, model_id
from whichvoice.protocol import ENGINE_VOICES, pool_sentences, pool_voices
from whichvoice.prototypes import refs_from_clips
from whichvoice.scoring import proportion
from whichvoice.serve.stream import SPEECH_BIN_END, LiveSpeakers, live_thresholds

MESSAGE_S = 0.1
WITHIN_S = 1.0
RULES = {
    "shipped": {},
    "one-threshold": {},  # the shipped rule with one window threshold whatever its speech
    "stop35": {},  # the shipped rule with turns held to the window threshold
    "previous": {"step_s": 0.25, "last_window": False, "new_voice_after_s": 0.5},
    # test: the shipped rule without an unnamed-streak margin (the shipped rule until stop 58)
    "no-streak": {},
}
# dev: the rule shipped after the speech thresholds' choice, with an unknown voice also
# started from 1 s of speech answered with no one, when it scores the margin under every
# enrolled voice's threshold (tried at stop 57 with 0.1; these three fixed at stop 58 before
# their run); a rule "streak M" each
STREAK_MARGINS = (0.1, 0.15, 0.2)
# how far a margin may move the dev figures from the rule without it (``chosen_streak``)
NAMED_LOSS, STRANGER_TURNS_GAIN, WRONG_GAIN = 0.01, 0.01, 0.005
# thresholds for windows of less speech (``LiveThresholds.accept_by_speech``): the lower end
# of each bin of a window's seconds of speech (``stream._speech_seconds``); the last bin ends
# at ``stream.SPEECH_BIN_END``, past which the window threshold (``live_accept``) holds
SPEECH_BINS = (0.4, 0.5, 0.6, 0.7)
SILENCED_S = (0.1, 0.2, 0.3, 0.4, 0.5)  # a window's start silenced, as a pause before a turn
SPEECH_HOP_S = 0.2  # window trials of the speech thresholds: a window every this much


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


def speech_thresholds(encoder, groups: list[dict[str, list]]) -> dict:
    """``accept_by_speech`` from dev windows (see ``SPEECH_BINS``): each group's voices
    enrolled from their first ``ENROLL_CLIPS`` clips, their other clips cut into
    ``stream.WINDOW_S`` windows every ``SPEECH_HOP_S``, each also with its first
    ``SILENCED_S`` seconds silenced; every window against every enrolled voice of its group,
    binned by its seconds of speech; each bin's threshold the lowest with at most ``LIVE_FAR``
    false acceptances over its trials."""
    from whichvoice.audio import Decoded
    from whichvoice.scoring import threshold_at_far
    from whichvoice.serve.stream import WINDOW_S, _speech_seconds

    size, hop = int(WINDOW_S * SAMPLE_RATE), int(SPEECH_HOP_S * SAMPLE_RATE)
    edges = [*SPEECH_BINS, SPEECH_BIN_END]
    trials = [([], []) for _ in SPEECH_BINS]
    for refs, voice, p, wave in held_out_waves(encoder, groups):
        pieces = []
        for a in range(0, wave.shape[0] - size + 1, hop):
            for silenced in (0.0, *SILENCED_S):
                x = wave[a : a + size].copy()
                x[: int(silenced * SAMPLE_RATE)] = 0.0
                pieces.append(Decoded(x, SAMPLE_RATE, str(p)))
        for piece, result in zip(pieces, encoder.embed_many(pieces), strict=True):
            speech = _speech_seconds(piece.wave)
            k = int(np.searchsorted(edges, speech, side="right")) - 1
            if not isinstance(result, tuple) or not 0 <= k < len(SPEECH_BINS):
                continue
            for name, score in zip(refs.names, refs.scores(result[0]), strict=True):
                trials[k][0 if name == voice else 1].append(float(score))
    out = []
    for low, (target, nontarget) in zip(SPEECH_BINS, trials, strict=True):
        t, n = np.array(target), np.array(nontarget)
        threshold = threshold_at_far(n, LIVE_FAR)
        out.append({"speech_s": low, "threshold": threshold, "target_trials": len(t),
                    "nontarget_trials": len(n), "false_rejection": float((t < threshold).mean()),
                    "false_acceptance": float((n >= threshold).mean())})  # fmt: skip
    return {"bins": out, "pairs": [[b["speech_s"], round(b["threshold"], 6)] for b in out]}


def adopts(dev: dict) -> bool:
    """The adoption rule for the speech thresholds (fixed before their first run, stop 52), on
    one encoder's dev figures: named within 1 s more often than with one threshold, strangers'
    turns named as enrolled at most one more, wrong answers inside enrolled voices' turns at most
    one point more."""
    new, old = dev["shipped"], dev["one-threshold"]
    return (
        new["named_within_1s"]["value"] > old["named_within_1s"]["value"]
        and new["stranger_turns_named_enrolled"]["k"]
        <= old["stranger_turns_named_enrolled"]["k"] + 1
        and new["wrong_answers_in_turns"]["value"] <= old["wrong_answers_in_turns"]["value"] + 0.01
    )


def streak_base(encoder_rules: dict) -> str:
    """The dev rule the streak margin is added to: the one shipped after the speech
    thresholds' choice (``adopts``)."""
    return "shipped" if adopts(encoder_rules) else "one-threshold"


def streak_eligible(new: dict, old: dict) -> bool:
    """Whether a margin's dev figures ``new`` stay near the rule without it, ``old`` (stop 58's
    rule): named within 1 s at most a point lower, strangers' turns named as enrolled at most a
    point higher, wrong answers inside enrolled voices' turns at most half a point higher."""
    return (
        new["named_within_1s"]["value"] >= old["named_within_1s"]["value"] - NAMED_LOSS
        and new["stranger_turns_named_enrolled"]["value"]
        <= old["stranger_turns_named_enrolled"]["value"] + STRANGER_TURNS_GAIN
        and new["wrong_answers_in_turns"]["value"]
        <= old["wrong_answers_in_turns"]["value"] + WRONG_GAIN
    )


def chosen_streak(dev: dict) -> float | None:
    """The margin to ship for one encoder (rule fixed before its run, stop 58): of the eligible
    margins (``streak_eligible``), the one answering the most strangers' changes with an
    unknown voice within 1 s, if more than the rule without one; ties: the larger margin."""
    old = dev[streak_base(dev)]
    best, most = None, old["strangers_unknown_within_1s"]["k"]
    for margin in sorted(STREAK_MARGINS, reverse=True):
        new = dev[f"streak {margin:g}"]
        if streak_eligible(new, old) and new["strangers_unknown_within_1s"]["k"] > most:
            best, most = margin, new["strangers_unknown_within_1s"]["k"]
    return best


def figures(convs, answers: list[list], enrolled: set[str]) -> dict:
    """The report's figures for one encoder and rule (see the module's docstring)."""
    delays, wrong, inside, strange, strange_n, strange_turns, stranger_turns = (
        [], 0, 0, 0, 0, 0, 0
    )  # fmt: skip
    unknown_delays = []  # changes to a stranger: the delay to its first unknown-N answer
    for conv, heard in zip(convs, answers, strict=True):
        for k, turn in enumerate(conv.turns):
            during = [s for t, s in heard if turn.start + 0.5 <= t <= turn.end and s]
            if turn.voice not in enrolled:
                if k > 0 and conv.turns[k - 1].voice != turn.voice:
                    answered = [t for t, s in heard if turn.start <= t <= turn.end
                                and s and s.startswith("unknown-")]  # fmt: skip
                    unknown_delays.append(answered[0] - turn.start if answered else float("inf"))
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
    d, u = np.array(delays), np.array(unknown_delays)
    return {
        "changes": len(d),
        "named_within_1s": proportion(int((d <= WITHIN_S).sum()), len(d)),
        "named_in_turn": proportion(int(np.isfinite(d).sum()), len(d)),
        "median_delay_s": float(np.median(d[np.isfinite(d)])) if np.isfinite(d).any()
        else None,
        "wrong_answers_in_turns": proportion(wrong, inside),
        "stranger_answers_named_enrolled": proportion(strange, strange_n),
        "stranger_turns_named_enrolled": proportion(strange_turns, stranger_turns),
        "stranger_changes": len(u),
        "strangers_unknown_within_1s": proportion(int((u <= WITHIN_S).sum()), len(u)),
        "strangers_unknown_in_turn": proportion(int(np.isfinite(u).sum()), len(u)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="auto,bundled")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--espeak-voices", type=int, default=12)
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--json", type=Path, default=None, help="[results/live(-dev).json]")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--draw", type=int, default=13, help="test draw (1-13: looked at; 14 on: fresh)"
    )
    parser.add_argument(
        "--write", action="store_true", help="with --split dev: ship the adopted speech thresholds"
    )
    args = parser.parse_args()
    if args.write and args.split != "dev":
        sys.exit("--write sets thresholds on dev data: use it with --split dev")
    dest = args.json or RESULTS / ("live.json" if args.split == "test" else "live-dev.json")
    dev = args.split == "dev"
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
        # the speech thresholds' dev windows: the live thresholds' (benchmarks/diarize.py's
        # espeak-ng dev voices and the human-dev speakers)
        human = joined_clips(work / "human", 10, 6, seed=3) if args.split == "dev" else None
    report = {}
    for name in args.encoders.split(","):
        encoder = load_encoder(name)
        refs = refs_from_clips(encoder, {v: clips[v][:ENROLL_CLIPS] for v in enrolled})
        shipped = live_thresholds(encoder)
        if dev:  # the candidate speech thresholds, set on dev windows
            speech = speech_thresholds(encoder, [clips, human])
            shipped = replace(shipped, accept_by_speech=tuple(map(tuple, speech["pairs"])))
            print(name, "speech thresholds", speech["pairs"], flush=True)
        report[name] = {
            "encoder": model_id(encoder),
            "live_threshold": shipped.accept,
            "live_turn_threshold": shipped.turn_accept,
            "live_threshold_by_speech": [list(p) for p in shipped.accept_by_speech],
            # the shipped margin (test); on dev, its candidate is reported as "unnamed_streak"
            **({} if dev else {"live_unnamed_streak": shipped.unnamed_streak}),
            "rules": {},
        }
        if dev:
            report[name]["speech_thresholds"] = speech
        rules = report[name]["rules"]
        streaks = {f"streak {m:g}": {} for m in STREAK_MARGINS} if dev else {}
        # the earlier rules, and every rule on dev but the candidates, have no streak margin
        earlier = replace(shipped, unnamed_streak=None)
        for rule, kwargs in {**RULES, **streaks}.items():
            if rule == "no-streak" and dev:
                continue  # the rule before the margin: on test
            if rule == "shipped":
                thresholds = earlier if dev else shipped
            elif rule == "one-threshold":
                thresholds = replace(earlier, accept_by_speech=())
            elif rule in streaks:  # on the rule shipped after the speech thresholds' choice
                base = (
                    earlier
                    if streak_base(rules) == "shipped"
                    else replace(earlier, accept_by_speech=())
                )
                thresholds = replace(base, unnamed_streak=float(rule.split()[1]))
            elif rule == "no-streak":
                thresholds = earlier
            else:  # the earlier rules: one window threshold, turns held to it
                thresholds = replace(earlier, turn_accept=None, accept_by_speech=())
            heard = [stream(c, kwargs, encoder, refs, thresholds) for c in convs]
            rules[rule] = figures(convs, heard, enrolled)
            print(name, rule, rules[rule], flush=True)
        if dev:
            report[name]["speech_thresholds"]["adopted"] = adopts(rules)
            chosen = chosen_streak(rules)
            report[name]["unnamed_streak"] = {
                "margins": list(STREAK_MARGINS), "base": streak_base(rules), "margin": chosen,
                "adopted": chosen is not None,
                "eligible": [m for m in STREAK_MARGINS
                             if streak_eligible(rules[f"streak {m:g}"], rules[streak_base(rules)])],
            }  # fmt: skip
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
                    "at the window threshold (or, since stop 52, the one for its seconds of "
                    "speech where the encoder has them), the turn's mean at the turn threshold",
                  "one-threshold": "the shipped rule with one window threshold whatever the "
                    "window's seconds of speech (until stop 52)",
                  "stop35": "the shipped rule with the turn's mean held to the window threshold "
                    "(stop 35's)",
                  "previous": "an answer every 0.25 s; named from the turn only (stop 33's, at "
                    "today's answer pacing)",
                  **({"streak M": "the rule shipped after the speech thresholds' choice "
                      "(shipped where they were adopted, else one-threshold) with an unknown "
                      "voice also started from 1 s of speech answered with no one, when their "
                      "mean scores M under every enrolled voice's threshold (tried at stop 57 "
                      "with 0.1, at stop 58 with "
                      f"{', '.join(f'{m:g}' for m in STREAK_MARGINS)})"} if dev else
                     {"no-streak": "the shipped rule without the unnamed-streak margin (the "
                      "shipped rule until stop 58)"})},
        "results": report,
        "target": {"named_within_1s": 1.0, "stranger_turns_named_enrolled": 0.0},
    }  # fmt: skip
    write_result(dest, result)
    print(f"-> {dest}")
    if args.write:
        path = Path(__file__).resolve().parents[1] / "src/whichvoice/data/diarize"
        # the encoders measured here replace their entries; the others' are kept
        before = (
            json.loads((path / LIVE_SPEECH).read_text()) if (path / LIVE_SPEECH).is_file() else {}
        )
        adopted = before.get("accept_by_speech", {})
        streaks = before.get("unnamed_streak", {})
        for r in report.values():
            adopted.pop(r["encoder"], None)
            streaks.pop(r["encoder"], None)
            if r["speech_thresholds"]["adopted"]:
                adopted[r["encoder"]] = r["live_threshold_by_speech"]
            if r["unnamed_streak"]["adopted"]:
                streaks[r["encoder"]] = r["unnamed_streak"]["margin"]
        write_result(path / LIVE_SPEECH, {
            "source": f"benchmarks/live.py {' '.join(sys.argv[1:])}, commit "
                      f"{made['commit'][:12]}: window thresholds by seconds of speech, each at "
                      f"{LIVE_FAR} false acceptances on dev windows, for the encoders whose dev "
                      "figures met the adoption rule (live.py's adopts); the unnamed-streak "
                      "margin chosen for each encoder by its rule (chosen_streak)",
            "speech_bin_end_s": SPEECH_BIN_END,
            "accept_by_speech": adopted,
            "unnamed_streak": streaks,
        })  # fmt: skip
        print(f"speech thresholds of {len(adopted)} encoder(s), unnamed-streak margins of "
              f"{len(streaks)} -> {path / LIVE_SPEECH}")  # fmt: skip


if __name__ == "__main__":
    main()
