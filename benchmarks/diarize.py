"""Diarization: who speaks when in conversations made from voices never seen in training, dev
or calibration (``whichvoice.diarize``), each encoder side by side on the same conversations.

Conversations (``whichvoice.conversation``): 2-6 voices, turns of 0.5-10 s, pauses of
0.1-1 s, or 10 % of the speech time overlapped; clean, in noise (``noise10``: 10 dB SNR) and in
a room (``room``), the evaluation suite's conditions (``whichvoice.conditions``), not the
training augmentation.

Voices and sentences:
- *dev* (the embedding window, the clustering settings and the naming threshold of each
  encoder): dev-pool espeak-ng random variants and the other engines' dev voices (Pico's
  voices of other languages and three festival speakers: ``protocol.ENGINE_VOICES["dev"]``,
  since stop 49; espeak-ng variants only before, and in stop 48's try, taken back, see
  docs/diarization.md) reading dev-pool sentences, in the test sets' four conditions (clean,
  10 % overlap, noise and, since stop 51, a room: until then no dev set was reverberant);
- *test* (reported only): test-pool espeak-ng random variants and the test voices of the other
  engines (MBROLA, RHVoice, Pico, piper, hibari: ``protocol.ENGINE_VOICES["test"]``) reading
  test-pool sentences. Half of the test voices (every other one, sorted) are enrolled from
  clips that no conversation uses: the naming figures are the share of an enrolled voice's
  speech time named after it, and how often (and how long) a voice that is not enrolled is
  named after one that is;
- *human*: conversations of the human-dev speakers (6 men saying digits, 8 kHz; digits joined
  into ~3 s clips): small and all male, reported beside; no diarization setting is chosen on
  them, but they are dev speakers elsewhere (the fused encoder's weights, verify's threshold):
  not a held-out figure.

Figures: DER with collars of 0.25 s and 0 s and JER (``pyannote.metrics``, overlap scored),
the share of conversations whose number of voices is found exactly, naming, and the real-time
factor (audio seconds per second of processing, this process's threads). DER over a set is
the total error over the total speech (pyannote's aggregate); its interval is a bootstrap over
conversations. Shares: Wilson intervals.

The live stream's accept threshold for each encoder (``whichvoice.serve.stream``: one-second
windows against enrolled voices) is set on dev windows too: the espeak-ng dev voices' and the
human-dev speakers', at most 0.1 % false acceptances over every window trial pooled.

``--draw K`` picks the test draw: its espeak-ng voices, its sentences and its conversations.
Draw 1's figures were looked at while the settings were chosen (stops 29 and 30), and draw 2's
before the naming threshold was added, and draw 3's before the dev sets were doubled (stop
32), so all three are closer to dev than to test; draw 4's before the embedding window was
added to the dev grid (stop 33); draw 5's naming figures in noise and in a room were what
set stop 44 to naming clusters from their speech (chosen on dev); draw 6's figures with
clusters merged by their speech (and its speed) were what set stop 45 to merging and naming
in one pass, so draw 7 was fresh from stop 45 on; stop 48's try of other engines' dev
voices was reported on draws 7 and 8, so draw 9 was fresh at stop 49; its figures were then
looked at, so draw 10 was fresh for stop 51's clustering rules; its figures were then looked
at, so draw 11 (the default) was fresh for stop 51's dev sets in a room, whose adoption
rule then read it: it has been a reused test set since (and its 9 engine voices are in every
draw). Draw 12's voices and conversations were streamed by ``benchmarks/live.py`` at stop
52 (live figures only, nothing chosen for diarization from them). The dev sets are
the same in every draw: 12 conversations a set without enrollment and 12 with every other
voice enrolled; the clustering settings are chosen on all 24, the naming threshold on
the enrolled ones.

``--write`` stores each encoder's dev-chosen settings in ``src/whichvoice/data/diarize``.
Writes benchmarks/results/diarize.json.

    python benchmarks/diarize.py [--workdir DIR] [--write] [--encoders auto,bundled,resemblyzer]
        [--draw 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from corpora import voice_clips as corpus_clips
from human import joined_clips
from provenance import RESULTS, provenance, write_result

from whichvoice import conditions
from whichvoice.audio import SAMPLE_RATE, encode_audio
from whichvoice.conversation import Conversation, make_conversation
from whichvoice.diarize import NAMING_SPEECH_S, DiarizeConfig, embed_windows, from_windows
from whichvoice.encoders import load_encoder, model_id
from whichvoice.files import write_atomic
from whichvoice.gallery import Gallery
from whichvoice.protocol import ENGINE_VOICES, pool_sentences, pool_voices
from whichvoice.scoring import proportion
from whichvoice.verification import enroll, operating_point

GRID = tuple(round(float(t), 2) for t in np.arange(0.20, 0.91, 0.05))
ENROLL_CLIPS = 3  # clips per enrolled voice, never in a conversation
LIVE_FAR = 0.001  # the live thresholds' false acceptances on dev window and turn trials
# (1e-4 was tried at stop 47 and taken back: docs/diarization.md, live mode's limitations)
LIVE_TURN_EVERY = 5  # a turn trial every this many windows (neighbours share most windows)
SHORT_VOICE_S = 2.5  # count exact reported apart where a voice speaks less than this in all
NAMING_COLLAR = 0.25  # s around turn edges not counted against naming (as DER's collar)
WINDOWS = ((1.5, 0.75), (1.0, 0.75))  # (window_s, hop_s) settings tried on dev
MIN_CLUSTER = (1.5, 2.0, 3.0)  # DiarizeConfig.min_cluster_s settings tried on dev
KEEP_FAR = (None, 0.5, 0.6, 0.7)  # DiarizeConfig.keep_far settings tried on dev
# DiarizeConfig.keep_region_s settings tried on dev (0: never), a stage after the grid (stop 51)
KEEP_REGION = (0.0, 0.5, 1.0, 1.5, 2.0)
# DiarizeConfig.mixture_above settings tried on dev (0: never), the stage after it (stop 51)
MIXTURE = (0.0, 0.9, 0.85, 0.8, 0.75, 0.7)
SETS = {  # name -> (share of speech overlapped, condition)
    "clean": (0.0, "clean"),
    "overlap10": (0.1, "clean"),
    "noise10": (0.0, "noise10"),
    "room": (0.0, "room"),
}
TARGETS = {
    "der_collar_0.25_no_overlap": 0.03,
    "der_collar_0.25_overlap10": 0.08,
    "count_exact": 0.95,
    "enrolled_named_right": 0.98,
    "unknown_named_enrolled": 0.0,
    "real_time_factor": 100.0,
}


def voice_clips(folder: Path, voices: list[str], sentences, per_voice: int) -> dict[str, list]:
    """{voice: clip paths}: every voice reading ``per_voice`` of ``sentences`` (resumable)."""
    found = corpus_clips(folder, voices, sentences, per_voice, seed=5, label=folder.name)
    return {v: p for v, p in found.items() if v in voices}


def conversations(clips: dict[str, list], n: int, overlap: float, seed: int) -> list[Conversation]:
    """``n`` conversations of 2-6 voices (at most as many as there are), 1-3 turns a voice."""
    rng = np.random.default_rng(seed)
    voices = sorted(clips)
    out = []
    for i in range(n):
        k = int(rng.integers(2, min(6, len(voices)) + 1))
        pick = [str(v) for v in rng.choice(voices, k, replace=False)]
        turns = int(rng.integers(k, 3 * k + 1))
        out.append(make_conversation({v: clips[v] for v in pick}, turns=turns,
                                     seed=seed * 1000 + i, overlap=overlap))  # fmt: skip
    return out


def degraded(conv: Conversation, condition: str, seed: int) -> bytes | np.ndarray:
    if condition == "clean":
        return conv.wave
    return conditions.make(condition, conv.wave, SAMPLE_RATE, seed)


def _source(audio, name: str, work: Path) -> Path:
    """The conversation's recording as a file under ``work/audio``, written every run: a
    file of the same name left by an earlier run may hold another conversation (until stop 48
    an existing file was kept, and a change of voices would have been measured on old audio)."""
    path = work / "audio" / f"{name}.wav"
    if not isinstance(audio, bytes):
        audio = encode_audio(audio, SAMPLE_RATE, "wav")
    if not path.exists() or path.read_bytes() != audio:
        write_atomic(path, audio, durable=False)
    return path


def hypothesis(result):
    from pyannote.core import Annotation, Segment

    hyp = Annotation()
    for j, s in enumerate(result.segments):
        hyp[Segment(s.start, s.end), j] = s.speaker
    return hyp


PARTS = ("missed detection", "false alarm", "confusion")


def der_parts(ref, hyp, collar: float) -> dict[str, float]:
    """Seconds of each kind of error and of reference speech ("total") in one conversation,
    overlap scored."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    d = DiarizationErrorRate(collar=collar, skip_overlap=False)(ref, hyp, detailed=True)
    return {k: float(d[k]) for k in (*PARTS, "total")}


def jer(ref, hyp) -> float:
    from pyannote.metrics.diarization import JaccardErrorRate

    return float(JaccardErrorRate()(ref, hyp))


def ratio_ci(err: np.ndarray, total: np.ndarray, resamples: int = 1000) -> list[float]:
    """95 % bootstrap interval of sum(err)/sum(total) over conversations."""
    rng = np.random.default_rng(0)
    n = len(err)
    vals = []
    for _ in range(resamples):
        ix = rng.integers(0, n, n)
        vals.append(err[ix].sum() / max(total[ix].sum(), 1e-9))
    return [round(float(np.percentile(vals, 2.5)), 6), round(float(np.percentile(vals, 97.5)), 6)]


def naming(conv: Conversation, result, enrolled: set[str]) -> dict:
    """How the voices were named (10 ms frames):
    - seconds of enrolled voices' speech under a turn named after them, of all their speech;
    - strangers (voices not enrolled) named as an enrolled voice: a turn label carrying an
      enrolled name whose speech is mostly a stranger's (the label is that stranger's voice,
      as DER's mapping of labels to voices would have it), once per stranger;
    - seconds of strangers' speech named after an enrolled voice, away from any other
      voice's speech and from turn edges (``NAMING_COLLAR``): what a boundary's slop or an
      overlap cannot explain."""
    step = 0.01
    n = int(np.ceil(conv.duration_s / step)) + 1
    hyp: dict[str, np.ndarray] = {}
    for s in result.segments:
        hyp.setdefault(s.speaker, np.zeros(n, bool))[int(s.start / step) : int(s.end / step)] = True
    ref: dict[str, np.ndarray] = {}
    edges = np.zeros(n, bool)
    c = int(NAMING_COLLAR / step)
    for t in conv.turns:
        a, b = int(t.start / step), int(t.end / step)
        ref.setdefault(t.voice, np.zeros(n, bool))[a:b] = True
        edges[max(a - c, 0) : a + c] = edges[max(b - c, 0) : b + c] = True
    speaking = sum(r.astype(int) for r in ref.values())
    right = sum(float((ref[v] & hyp.get(v, np.zeros(n, bool))).sum()) * step
                for v in ref if v in enrolled)  # fmt: skip
    enrolled_s = sum(float(ref[v].sum()) * step for v in ref if v in enrolled)
    strangers = [v for v in ref if v not in enrolled]
    named_as = set()
    for label, frames in hyp.items():
        if label not in enrolled:
            continue
        overlap = {v: float((frames & r).sum()) for v, r in ref.items()}
        mostly = max(overlap, key=overlap.get)
        if mostly in strangers and overlap[mostly] > 0:
            named_as.add(mostly)
    clear = (speaking == 1) & ~edges
    named_any = np.zeros(n, bool)
    for label, frames in hyp.items():
        if label in enrolled:
            named_any |= frames
    wrong_s = sum(float((ref[v] & clear & named_any).sum()) * step for v in strangers)
    unknown_s = sum(float((ref[v] & clear).sum()) * step for v in strangers)
    return {"right_s": right, "enrolled_s": enrolled_s, "wrong_s": wrong_s,
            "unknown_s": unknown_s, "unknown_voices_named": len(named_as),
            "unknown_voices": len(strangers)}  # fmt: skip


def held_out_waves(encoder, groups: list[dict[str, list]]):
    """For each group of {voice: clips}: its voices enrolled from their first ``ENROLL_CLIPS``
    clips (as ``enroll`` does: ``whichvoice.prototypes``); yields (the group's prototypes, voice,
    clip path, its 16 kHz waveform) for every other clip (the live thresholds' window trials)."""
    from whichvoice.audio import read_audio, resample
    from whichvoice.prototypes import refs_from_clips

    for clips in groups:
        refs = refs_from_clips(encoder, {v: paths[:ENROLL_CLIPS] for v, paths in clips.items()})
        for voice, paths in clips.items():
            for p in paths[ENROLL_CLIPS:]:
                wave, rate = read_audio(p)
                yield refs, voice, p, resample(wave, rate, SAMPLE_RATE)


def live_threshold(encoder, groups: list[dict[str, list]]) -> dict:
    """The live stream's thresholds (``whichvoice.serve.stream.LiveThresholds``): each voice
    enrolled from its first ``ENROLL_CLIPS`` clips (as ``enroll`` does: ``whichvoice.prototypes``),
    the others cut into ``stream.WINDOW_S`` windows every ``stream.STEP_S``, as the live state cuts
    a stream. Window trials: every window against every enrolled voice of its group; turn trials:
    every ``LIVE_TURN_EVERY``-th window's turn (the mean of the unit embeddings of the windows over
    the last ``stream.TURN_S`` of the clip, as the live state keeps a turn) against the same voices.
    Each threshold is the lowest with at most ``LIVE_FAR`` false acceptances over its own trials
    pooled: a turn's mean scores higher against a voice like its own than one window does, so one
    threshold for both would name strangers from their turns."""
    from whichvoice.audio import Decoded
    from whichvoice.runtime import unit
    from whichvoice.scoring import threshold_at_far
    from whichvoice.serve.stream import STEP_S, TURN_S, WINDOW_S

    trials: dict[str, tuple[list, list]] = {"window": ([], []), "turn": ([], [])}
    size, hop = int(WINDOW_S * SAMPLE_RATE), int(STEP_S * SAMPLE_RATE)
    turn_windows = 1 + round((TURN_S - WINDOW_S) / STEP_S)

    def score(kind: str, voice: str, refs, emb: np.ndarray) -> None:
        for name, sc in zip(refs.names, refs.scores(emb), strict=True):
            trials[kind][0 if name == voice else 1].append(float(sc))

    for refs, v, p, wave in held_out_waves(encoder, groups):
        pieces = [Decoded(wave[a : a + size], SAMPLE_RATE, str(p))
                  for a in range(0, wave.shape[0] - size + 1, hop)]  # fmt: skip
        embs = [r[0] if isinstance(r, tuple) else None
                for r in encoder.embed_many(pieces)]  # fmt: skip
        for i, emb in enumerate(embs):
            if emb is None:
                continue
            score("window", v, refs, emb)
            if i % LIVE_TURN_EVERY == 0:
                turn = [e for e in embs[max(0, i - turn_windows + 1) : i + 1]
                        if e is not None]  # fmt: skip
                score("turn", v, refs, unit(np.mean(turn, axis=0)))
    out = {}
    for kind, (target, nontarget) in trials.items():
        t, n = np.array(target), np.array(nontarget)
        threshold = threshold_at_far(n, LIVE_FAR)
        out[kind] = {"threshold": threshold, "target_trials": len(t),
                     "nontarget_trials": len(n), "false_rejection": float((t < threshold).mean()),
                     "false_acceptance": float((n >= threshold).mean())}  # fmt: skip
    return out["window"] | {"turn": out["turn"]}


def embed_all(encoder, sources: list[Path], cfg: DiarizeConfig) -> tuple[list, float]:
    """Each source's (windows, duration), and the seconds it took."""
    t0 = time.perf_counter()
    out = [embed_windows(src, encoder, cfg) for src in sources]
    return out, time.perf_counter() - t0


def dev_der(convs, embedded, encoder, cfg, threshold, sources=None) -> float:
    """The DER (collar 0.25 s) of one set of dev conversations at one setting (``sources``:
    their recordings, for the steps that read them again)."""
    err = total = 0.0
    for i, (conv, (w, d)) in enumerate(zip(convs, embedded, strict=True)):
        result = from_windows(w, d, f"conv{i}", encoder, cfg, threshold=(threshold, "dev"),
                              source=None if sources is None else sources[i])  # fmt: skip
        p = der_parts(conv.annotation(), hypothesis(result), 0.25)
        err += sum(p[k] for k in PARTS)
        total += p["total"]
    return err / total


def dev_stage(
    sets: dict, embedded: dict, keys: list[str], encoder, threshold: float, cfg, field: str,
    values: tuple[float, ...], *, read: bool = False,
) -> tuple[float, dict[float, float]]:  # fmt: skip
    """One setting chosen after the grid: of ``values`` for ``cfg``'s ``field`` (0: never),
    the one with the lowest mean DER (collar 0.25 s) over the dev sets ``keys``; ties: never,
    else the largest (the fewest clusters kept, absorbed or merged: what the ties of every
    stage have been since stop 45). ``read``: the steps read the recordings again. Returns the
    value and each value's mean DER."""
    der = {
        v: float(np.mean([
            dev_der(sets[k][1], embedded[k][1], encoder, replace(cfg, **{field: v}), threshold,
                    sets[k][2] if read else None)
            for k in keys
        ]))
        for v in values
    }  # fmt: skip
    lowest = min(round(x, 6) for x in der.values())
    tied = [v for v, x in der.items() if round(x, 6) == lowest]
    return (0.0 if 0.0 in tied else max(tied)), der


_GRID: tuple = ()  # a grid worker's (encoder, {dev set: (conversations, embedded)})


def _grid_init(encoder_name: str, dev: dict) -> None:
    global _GRID
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    _GRID = (load_encoder(encoder_name), dev)


def _grid_point(point: tuple) -> float:
    """The mean over the dev sets of the DER (collar 0.25 s) at one grid point
    (window, overlap, smallest cluster, keep-far or -1 for never, threshold)."""
    window, overlap, small, far, t = point
    encoder, dev = _GRID
    c = _config(window, overlap, small, far)
    sets = dev[window]
    return float(np.mean([dev_der(convs, emb, encoder, c, t) for convs, emb in sets.values()]))


def _config(window: tuple[float, float], overlap: bool, small: float, far: float):
    """The DiarizeConfig of a grid point (``far`` -1: small clusters never kept)."""
    return DiarizeConfig(window_s=window[0], hop_s=window[1], overlap=overlap,
                         min_cluster_s=small, keep_far=None if far < 0 else far,
                         keep_region_s=0.0, mixture_above=0.0)  # fmt: skip


def dev_grid(encoder_name: str, dev: dict, points: list[tuple]) -> list[float]:
    """``_grid_point`` of every point, on one process a core (spawned: each loads the
    encoder, which only names the settings here; the embeddings come with ``dev``)."""
    workers = max(1, min(len(os.sched_getaffinity(0)), len(points)))
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_grid_init,
        initargs=(encoder_name, dev),
    ) as pool:
        return list(pool.map(_grid_point, points, chunksize=4))


# naming thresholds tried on dev: the encoder's verification threshold plus these (cosine)
MERGE_GRID = (0.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)  # 0: never merged
# live mode's distance for keeping a window in the turn so far (and joining unknown voices):
# until stop 49 the clustering distance; kept at the one chosen on the espeak-ng dev
# conversations (stop 46, 42020c9), which every live figure was measured with. The clustering
# distance chosen since on dev voices of more engines (auto: 0.4) keeps another voice's first
# windows in a turn more often: the suite's live stream named its enrolled festival:ked in 12
# of its turn's 20 answers (the rest none) against 14 or more with 0.35. Keyed by encoder
# name: an encoder with new weights inherits its entry, to be looked at again (live.py --split dev)
LIVE_JOIN = {"auto": 0.35, "bundled": 0.6, "resemblyzer": 0.25}
NAMING_STRANGERS = 50  # the naming rule lets 1 dev stranger in this many be named (stop 49)
NAMING_OFFSETS = (-0.1, -0.05, -0.025, 0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2)


def _dev_count(dev: dict, encoder, cfg, threshold, sources: dict) -> dict:
    """The share of dev conversations whose number of voices is found exactly (reported
    beside the chosen settings; the rule does not use it)."""
    hits = [
        _counted_right(
            conv,
            from_windows(
                w, d, f"conv{i}", encoder, cfg, threshold=(threshold, "dev"), source=sources[key][i]
            ),
        )
        for key, (convs, embedded) in dev.items()
        for i, (conv, (w, d)) in enumerate(zip(convs, embedded, strict=True))
    ]
    return proportion(sum(hits), len(hits))


def naming_kw(way: str, at: float, windows_at: float) -> dict:
    """``from_windows``'s naming thresholds for a way at ``at``: a cluster named from its
    speech, at ``at``; one that falls back to its windows (too little speech alone), at the
    windows' threshold, as the shipped settings do."""
    if way == "speech":
        return {"way_thresholds": (at, windows_at)}
    return {"verify_threshold": at}


def dev_naming(
    dev: dict, encoder, cfg, threshold, gallery, enrolled: set[str], way: str = "centroid",
    windows_at: float | None = None,
) -> dict:  # fmt: skip
    """For each naming threshold (``NAMING_OFFSETS`` from the verification one), over every
    dev set (conversations, their window embeddings, their recordings): the share of
    enrolled speech named right and the strangers named as enrolled. ``way`` "speech": the
    clusters named from their speech at each threshold, those that fall back to their
    windows at ``windows_at``."""
    from whichvoice.verification import operating_point

    base = operating_point(encoder).threshold
    out = {}
    for offset in NAMING_OFFSETS:
        t = round(base + offset, 6)
        if not -1.0 <= t < 1.0:  # a cosine: resemblyzer's threshold is near 0.9
            continue
        found = [
            naming(conv, from_windows(w, d, f"conv{i}", encoder, cfg,
                                      threshold=(threshold, "benchmark"), gallery=gallery,
                                      source=src, **naming_kw(way, t, windows_at)),
                   enrolled)
            for convs, embedded, sources in dev.values()
            for i, (conv, (w, d), src) in enumerate(zip(convs, embedded, sources, strict=True))
        ]  # fmt: skip
        out[str(t)] = {
            "named_right": sum(x["right_s"] for x in found)
            / max(sum(x["enrolled_s"] for x in found), 1e-9),
            "strangers_named": sum(x["unknown_voices_named"] for x in found),
            "strangers": sum(x["unknown_voices"] for x in found),
        }
    return out


def strangers_allowed(grid: dict) -> int:
    """How many dev strangers named as enrolled voices the naming rule lets pass: 1 in
    ``NAMING_STRANGERS`` (at least 1), or the fewest any threshold names when none names so
    few. Until stop 49 the fewest: one stranger of 71 then moved the threshold 0.05-0.1 above
    verification's, and enrolled voices went unnamed in noise and rooms."""
    any_row = next(iter(grid.values()))
    bound = max(1, any_row["strangers"] // NAMING_STRANGERS)
    return max(bound, min(row["strangers_named"] for row in grid.values()))


def choose_naming(grid: dict) -> float:
    """The rule (fixed before scoring): of the naming thresholds that named at most
    ``strangers_allowed`` dev strangers as enrolled voices, the ones naming the most enrolled
    speech right; of those, the middle (as for the clustering threshold)."""
    allowed = strangers_allowed(grid)
    within = {t: round(grid[t]["named_right"], 6) for t in grid
              if grid[t]["strangers_named"] <= allowed}  # fmt: skip
    best = max(within.values())
    tied = sorted(float(t) for t in within if within[t] == best)
    return tied[(len(tied) - 1) // 2]


def choose_naming_way(grids: dict[str, dict], at: dict[str, float]) -> str:
    """The rule (fixed before scoring, as ``choose_naming``): of the ways to name a cluster,
    each at its own chosen threshold, those within the bound of dev strangers (the larger of
    the ways' bounds), then the most enrolled dev speech right; ties: the centroid (nothing
    read again)."""
    allowed = max(strangers_allowed(g) for g in grids.values())
    rows = {way: grids[way][str(at[way])] for way in grids}
    key = {
        way: (row["strangers_named"] <= allowed, round(row["named_right"], 6),
              way == "centroid")
        for way, row in rows.items()
    }  # fmt: skip
    return max(key, key=key.get)


HEADLINE = ("der_collar_0.25", "der_collar_0.25_ci95", "der_collar_0.0", "jer", "count_exact",
            "count_exact_by_shortest_voice", "enrolled_named_right",
            "unknown_voices_named_enrolled")  # fmt: skip


def _headline(figs: dict) -> dict:
    """The figures of ``score_set`` that a comparison quotes."""
    return {k: figs[k] for k in HEADLINE if k in figs}


def dev_voices(espeak: int) -> list[str]:
    """The dev voices: ``espeak`` dev-pool espeak-ng variants and the other engines' dev voices
    (``protocol.ENGINE_VOICES["dev"]``), as a test draw holds test-pool variants and the
    other engines' test voices (until stop 49 the dev voices were espeak-ng variants only)."""
    return pool_voices("dev", espeak, start=70_000) + list(ENGINE_VOICES["dev"])


def _counted_right(conv: Conversation, result) -> bool:
    """Whether a diarization found exactly the conversation's number of voices."""
    return len(result.speakers) == len(_speech_by_voice(conv))


def _speech_by_voice(conv: Conversation) -> dict[str, float]:
    """Seconds each voice of a conversation speaks, in all."""
    spoken: dict[str, float] = {}
    for t in conv.turns:
        spoken[t.voice] = spoken.get(t.voice, 0.0) + t.end - t.start
    return spoken


def score_set(
    convs, embedded, sources, encoder, cfg, threshold, gallery=None, enrolled=frozenset(),
    naming_at=None, other_naming=None,
):  # fmt: skip
    """Every figure of one set of conversations at one setting (``naming_at``: ``from_windows``'s
    naming thresholds, ``naming_kw``; None: the encoder's shipped ones). ``other_naming``: (way,
    its config, its ``naming_kw``): also name the same clusters the way not chosen, for the
    record (not timed)."""
    parts: dict[float, list[dict]] = {0.25: [], 0.0: []}
    jers, exact, names, shortest = [], [], [], []
    t0 = time.perf_counter()
    results = [
        from_windows(w, d, f"conv{i}", encoder, cfg, threshold=(threshold, "benchmark"),
                     gallery=gallery, source=src, **(naming_at or {}))
        for i, ((w, d), src) in enumerate(zip(embedded, sources, strict=True))
    ]  # fmt: skip
    cluster_s = time.perf_counter() - t0
    other = []
    if gallery is not None and other_naming is not None:
        other = [
            naming(conv, from_windows(w, d, f"conv{i}", encoder, other_naming[1],
                                      threshold=(threshold, "benchmark"), gallery=gallery,
                                      source=src, **other_naming[2]),
                   set(enrolled))
            for i, (conv, (w, d), src) in enumerate(zip(convs, embedded, sources, strict=True))
        ]  # fmt: skip
    for conv, result in zip(convs, results, strict=True):
        ref, hyp = conv.annotation(), hypothesis(result)
        for collar, found in parts.items():
            found.append(der_parts(ref, hyp, collar))
        jers.append(jer(ref, hyp))
        exact.append(_counted_right(conv, result))
        shortest.append(min(_speech_by_voice(conv).values()))
        if gallery is not None:
            names.append(naming(conv, result, set(enrolled)))
    out = {"conversations": len(convs), "cluster_seconds": cluster_s}
    for collar, found in parts.items():
        e = np.array([sum(p[k] for k in PARTS) for p in found])
        t = np.array([p["total"] for p in found])
        out[f"der_collar_{collar}"] = float(e.sum() / t.sum())
        out[f"der_collar_{collar}_ci95"] = ratio_ci(e, t)
        out[f"der_collar_{collar}_parts"] = {
            k: float(sum(p[k] for p in found) / t.sum()) for k in PARTS
        }
    out["jer"] = float(np.mean(jers))
    out["count_exact"] = proportion(int(sum(exact)), len(exact))
    # a voice that speaks for a second or two in all is where counting fails most: apart
    short = np.array(shortest) < SHORT_VOICE_S
    hits = np.array(exact, bool)
    out["count_exact_by_shortest_voice"] = {
        name: proportion(int(hits[group].sum()), int(group.sum()))
        for name, group in ((f"under {SHORT_VOICE_S} s", short),
                            (f"{SHORT_VOICE_S} s or more", ~short))
        if group.any()
    }  # fmt: skip
    if names:
        right = sum(x["right_s"] for x in names)
        total = sum(x["enrolled_s"] for x in names)
        out["enrolled_named_right"] = float(right / total) if total else None
        out["enrolled_named_right_ci95"] = ratio_ci(
            np.array([x["right_s"] for x in names]), np.array([x["enrolled_s"] for x in names])
        )
        out["unknown_named_enrolled_s_share"] = float(
            sum(x["wrong_s"] for x in names) / max(sum(x["unknown_s"] for x in names), 1e-9)
        )
        out["unknown_voices_named_enrolled"] = proportion(
            sum(x["unknown_voices_named"] for x in names), sum(x["unknown_voices"] for x in names)
        )
    if other:
        out["other_naming"] = {
            "way": other_naming[0],
            "thresholds": other_naming[2],
            "enrolled_named_right": float(
                sum(x["right_s"] for x in other) / max(sum(x["enrolled_s"] for x in other), 1e-9)
            ),
            "enrolled_named_right_ci95": ratio_ci(
                np.array([x["right_s"] for x in other]),
                np.array([x["enrolled_s"] for x in other]),
            ),
            "unknown_voices_named_enrolled": proportion(
                sum(x["unknown_voices_named"] for x in other),
                sum(x["unknown_voices"] for x in other),
            ),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="auto,bundled,resemblyzer")
    parser.add_argument("--dev-conversations", type=int, default=12, help="per dev set")
    parser.add_argument("--test-conversations", type=int, default=20, help="per test set")
    parser.add_argument("--human-conversations", type=int, default=12)
    parser.add_argument("--espeak-voices", type=int, default=12, help="dev and test, each")
    parser.add_argument("--json", type=Path, default=RESULTS / "diarize.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the audio here")
    parser.add_argument("--write", action="store_true", help="store the dev-chosen thresholds")
    parser.add_argument("--draw", type=int, default=11,
                        help="test draw (1-10: looked at; 11: fresh)")  # fmt: skip
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    made = provenance(("pyannote.metrics", "scikit-learn"))
    encoders = args.encoders.split(",")
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="whichvoice-diarize-"))
        )
        # dev: every other voice enrolled from 3 clips that no conversation uses, so that the
        # naming threshold is chosen on dev conversations too
        dev_all = voice_clips(work / "dev-enrolled", dev_voices(args.espeak_voices),
                              pool_sentences("dev", 300), 6 + ENROLL_CLIPS)  # fmt: skip
        dev_enrolled = sorted(dev_all)[::2]
        dev_clips = {v: p[ENROLL_CLIPS:] for v, p in dev_all.items()}
        # and the same voices' conversations without enrollment (the first dev sets): the
        # clustering settings are chosen on both, the naming threshold on the enrolled ones
        dev_plain = voice_clips(work / "dev", dev_voices(args.espeak_voices),
                                pool_sentences("dev", 300), 6)  # fmt: skip
        plain_n = args.dev_conversations
        # each draw: its own test-pool voices, sentences and conversations (and folder)
        test_voices = pool_voices(
            "test", args.espeak_voices, start=70_000 + 1_000 * (args.draw - 1)
        ) + list(ENGINE_VOICES["test"])
        test_dir = work / ("test" if args.draw == 1 else f"test-draw{args.draw}")
        test_all = voice_clips(test_dir, test_voices,
                               pool_sentences("test", 300, seed=args.draw - 1),
                               6 + ENROLL_CLIPS)  # fmt: skip
        enrolled = sorted(test_all)[::2]
        enroll_clips = {v: test_all[v][:ENROLL_CLIPS] for v in enrolled}
        test_clips = {v: p[ENROLL_CLIPS:] if v in enrolled else p for v, p in test_all.items()}
        human = joined_clips(work / "human", 10, 6, seed=3)
        sets: dict[str, tuple[str, list[Conversation], list[Path]]] = {}
        for split, clips, n in (("dev", dev_clips, args.dev_conversations),
                                ("test", test_clips, args.test_conversations)):  # fmt: skip
            for name, (overlap, condition) in SETS.items():
                seed = {"dev": 1.5, "test": 2 + 10 * (args.draw - 1)}[split] * 100 + list(
                    SETS
                ).index(name)
                seed = int(seed)
                convs = conversations(clips, n, overlap, seed)
                prefix = (
                    "dev-named"
                    if split == "dev"
                    else split
                    if args.draw == 1
                    else f"{split}-draw{args.draw}"
                )
                sources = [
                    _source(
                        degraded(c, condition, seed * 1000 + i), f"{prefix}-{name}-{i:02d}", work
                    )
                    for i, c in enumerate(convs)
                ]
                if split == "dev":  # the plain dev conversations first, then the enrolled
                    seed = 100 + list(SETS).index(name)  # the first dev sets' seeds
                    plain = conversations(dev_plain, plain_n, overlap, seed)
                    convs = plain + convs
                    sources = [
                        _source(degraded(c, condition, seed * 1000 + i), f"dev-{name}-{i:02d}",
                                work)
                        for i, c in enumerate(plain)
                    ] + sources  # fmt: skip
                sets[f"{split}/{name}"] = (split, convs, sources)
        convs = conversations(human, args.human_conversations, 0.0, 900)
        sets["human/clean"] = ("human", convs, [
            _source(c.wave, f"human-clean-{i:02d}", work) for i, c in enumerate(convs)
        ])  # fmt: skip
        print({k: len(v[1]) for k, v in sets.items()}, flush=True)

        report: dict = {"encoders": {}, "chosen": {}, "dev": {}, "test": {}, "human": {}}
        thresholds_out = {}
        naming_out: dict[str, float] = {}
        speech_out: dict[str, float] = {}
        naming_other_out: dict[str, float] = {}
        merge_out: dict[str, float] = {}
        live: dict[str, dict] = {}
        for name in encoders:
            encoder = load_encoder(name)
            ident = model_id(encoder)
            report["encoders"][name] = ident
            cfg = DiarizeConfig(window_s=WINDOWS[0][0], hop_s=WINDOWS[0][1])
            # loaded before any timing: the first call pays scikit-learn's import and the
            # encoder's first pass, not the real-time factor
            from sklearn.cluster import AgglomerativeClustering  # noqa: F401

            embed_windows(sets["dev/clean"][2][0], encoder, cfg)
            # dev: every window, threshold, smallest cluster and keep-far distance, overlap
            # marking off and on
            dev_keys = [k for k in sets if k.startswith("dev/")]
            dev: dict[tuple, dict] = {}
            for window in WINDOWS:
                c = DiarizeConfig(window_s=window[0], hop_s=window[1])
                dev[window] = {}
                for key in dev_keys:
                    found, took = embed_all(encoder, sets[key][2], c)
                    dev[window][key] = (sets[key][1], found)
                    print(f"{name} {key}, window {window[0]} s: embedded in {took:.0f} s",
                          flush=True)  # fmt: skip
            points = [
                (window, overlap, small, -1.0 if far is None else far, t)
                for window in WINDOWS
                for overlap in (False, True)
                for small in MIN_CLUSTER
                for far in KEEP_FAR
                for t in GRID
            ]
            grid = dict(zip(points, dev_grid(name, dev, points), strict=True))
            best = min(round(v, 6) for v in grid.values())
            tops = [k for k, v in grid.items() if round(v, 6) == best]
            overlap = min(k[1] for k in tops)
            small = max(k[2] for k in tops if k[1] == overlap)
            far = min(k[3] for k in tops if k[1:3] == (overlap, small))
            window = max(k[0] for k in tops if k[1:4] == (overlap, small, far))
            tied = sorted(k[4] for k in tops if k[:4] == (window, overlap, small, far))
            threshold = tied[(len(tied) - 1) // 2]  # the middle of a plateau
            keep_far = None if far < 0 else far
            chosen_cfg = _config(window, overlap, small, far)
            # then, one setting at a time, each by ``dev_stage``: (stop 51) keeping a small
            # cluster that holds every window of a speech region that long (a voice heard
            # once, between pauses); (stop 51) absorbing a small cluster nearer the mean of
            # two others than either (their overlap); merging clusters whose speech is one
            # voice (``merge_by_speech``, their recordings read again)
            stage = (sets, dev[window], dev_keys, encoder, threshold)
            keep_region, region_der = dev_stage(*stage, chosen_cfg, "keep_region_s", KEEP_REGION)
            chosen_cfg = replace(chosen_cfg, keep_region_s=keep_region)
            mixture, mixture_der = dev_stage(*stage, chosen_cfg, "mixture_above", MIXTURE)
            chosen_cfg = replace(chosen_cfg, mixture_above=mixture)
            merge_at, merge_der = dev_stage(*stage, chosen_cfg, "merge_speech", MERGE_GRID,
                                            read=True)  # fmt: skip
            chosen_cfg = replace(chosen_cfg, merge_speech=merge_at)
            for what, at, der in (("keeping clusters that hold a region of", keep_region,
                                   region_der),
                                  ("absorbing mixtures above", mixture, mixture_der),
                                  ("merging at", merge_at, merge_der)):  # fmt: skip
                print(f"{name}: dev chose {what} {at} "
                      f"({ {v: round(x, 4) for v, x in der.items()} })", flush=True)  # fmt: skip
            embedded, seconds = {}, {}
            for key, (_, _, sources) in sets.items():
                if key in dev_keys:
                    embedded[key] = dev[window][key][1]
                    continue
                embedded[key], seconds[key] = embed_all(encoder, sources, chosen_cfg)
                print(f"{name} {key}: embedded in {seconds[key]:.0f} s", flush=True)
            report["chosen"][name] = {
                "window_s": window[0],
                "hop_s": window[1],
                "threshold": threshold,
                "overlap": overlap,
                "min_cluster_s": small,
                "keep_far": keep_far,
                "dev_mean_der_collar_0.25": grid[(window, overlap, small, far, threshold)],
                "keep_region_s": {
                    "seconds": keep_region,
                    "dev_mean_der": {str(r): v for r, v in region_der.items()},
                },
                "mixture_above": {
                    "cosine": mixture,
                    "dev_mean_der": {str(m): v for m, v in mixture_der.items()},
                },
                "dev_count_exact": _dev_count(
                    dev[window], encoder, chosen_cfg, threshold, {k: sets[k][2] for k in dev_keys}
                ),
                "merge_speech": {
                    "cosine": merge_at,
                    "dev_mean_der": {str(t): v for t, v in merge_der.items()},
                },
                "grid": {
                    f"window {w[0]} s every {w[1]} s, {'overlap' if o else 'no-overlap'}, min "
                    f"cluster {m} s, keep far {'never' if f < 0 else f}, threshold {t}": v
                    for (w, o, m, f, t), v in grid.items()
                },
            }
            thresholds_out[ident] = threshold
            # the live thresholds: the espeak-ng dev voices' windows and the human-dev
            # speakers' (stop 48: with the other engines' dev voices too they rose, and live
            # mode named voices later; see docs/diarization.md)
            live_dev = {v: p for v, p in dev_all.items() if v.startswith("espeak-ng:")}
            live[ident] = live_threshold(encoder, [live_dev, human])
            report["chosen"][name]["live"] = live[ident]
            print(f"{name}: live thresholds {live[ident]['threshold']:.3f} (dev windows: FR "
                  f"{live[ident]['false_rejection']:.3f}), turns "
                  f"{live[ident]['turn']['threshold']:.3f} (FR "
                  f"{live[ident]['turn']['false_rejection']:.3f})", flush=True)  # fmt: skip
            print(f"{name}: dev chose window {window[0]} s every {window[1]} s, threshold "
                  f"{threshold}, overlap {overlap}, min cluster {small} s, keep far {keep_far} "
                  f"(dev DER {grid[(window, overlap, small, far, threshold)]:.4f})",
                  flush=True)  # fmt: skip
            # the naming threshold: dev conversations, a gallery of the enrolled dev voices
            dev_gallery = Gallery(
                stack.enter_context(tempfile.TemporaryDirectory()) + "/dev.sqlite", ident
            )
            for v in dev_enrolled:
                enroll(encoder, dev_gallery, v, dev_all[v][:ENROLL_CLIPS])
            dev_named = {
                k: (sets[k][1][plain_n:], embedded[k][plain_n:], sets[k][2][plain_n:])
                for k in dev_keys
            }
            # two ways to name a cluster: its own speech embedded again (up to
            # NAMING_SPEECH_S), or the centre of its window embeddings (the only way before
            # stop 44); each way's threshold by the naming rule, then the way by the same
            # rule (``choose_naming_way``)
            ways = {"speech": replace(chosen_cfg, naming_speech_s=NAMING_SPEECH_S),
                    "centroid": replace(chosen_cfg, naming_speech_s=0.0)}  # fmt: skip
            grids = {"centroid": dev_naming(dev_named, encoder, ways["centroid"], threshold,
                                            dev_gallery, set(dev_enrolled))}  # fmt: skip
            at = {"centroid": choose_naming(grids["centroid"])}
            # a cluster with too little speech alone falls back to its windows, at theirs
            grids["speech"] = dev_naming(dev_named, encoder, ways["speech"], threshold,
                                         dev_gallery, set(dev_enrolled), "speech",
                                         at["centroid"])  # fmt: skip
            at["speech"] = choose_naming(grids["speech"])
            dev_gallery.close()
            way = choose_naming_way(grids, at)
            other_way = next(w for w in ways if w != way)
            naming_at, naming_cfg = at[way], ways[way]
            report["chosen"][name]["naming"] = {
                "way": way,
                "threshold": naming_at,
                "speech_s": naming_cfg.naming_speech_s,
                "verification_threshold": operating_point(encoder).threshold,
                "grid": grids[way],
                "other": {"way": other_way, "threshold": at[other_way], "grid": grids[other_way]},
            }
            speech_out[ident] = naming_cfg.naming_speech_s
            naming_out[ident] = naming_at
            naming_other_out[ident] = at[other_way]
            merge_out[ident] = merge_at
            print(f"{name}: dev chose naming threshold {naming_at:.3f} (verification "
                  f"{operating_point(encoder).threshold:.3f})", flush=True)  # fmt: skip
            gallery = Gallery(stack.enter_context(tempfile.TemporaryDirectory()) + "/g.sqlite",
                              ident)  # fmt: skip
            for v, paths in enroll_clips.items():
                enroll(encoder, gallery, v, paths)  # named by the voice id
            for key, (split, convs, sources) in sets.items():
                if split == "dev":
                    continue
                chosen_kw = naming_kw(way, at[way], at["centroid"])
                other = (other_way, ways[other_way], naming_kw(other_way, at[other_way],
                                                               at["centroid"]))  # fmt: skip
                figs = score_set(convs, embedded[key], sources, encoder, naming_cfg, threshold,
                                 gallery if split == "test" else None, set(enrolled),
                                 chosen_kw, other)  # fmt: skip
                if keep_region or mixture:  # the same windows as before stop 51, for the record
                    figs["as_before_stop_51"] = _headline(score_set(
                        convs, embedded[key], sources, encoder,
                        replace(naming_cfg, keep_region_s=0.0, mixture_above=0.0), threshold,
                        gallery if split == "test" else None, set(enrolled), chosen_kw,
                    ))  # fmt: skip
                audio = sum(c.duration_s for c in convs)
                figs["audio_seconds"] = audio
                figs["real_time_factor"] = audio / (seconds[key] + figs["cluster_seconds"])
                report[split].setdefault(key.split("/")[1], {})[name] = figs
                print(f"{name} {key}: DER {figs['der_collar_0.25']:.4f} (collar 0.25), "
                      f"count exact {figs['count_exact']['value']:.2f}, "
                      f"x{figs['real_time_factor']:.0f} real time", flush=True)  # fmt: skip
            gallery.close()
    result = {
        "benchmark": "diarize",
        **made,
        "command": "python benchmarks/diarize.py " + " ".join(sys.argv[1:]),
        "test_draw": args.draw,
        "voices": {
            "dev": sorted(dev_clips),
            "test": sorted(test_all),
            "enrolled": enrolled,
            "human": sorted(human),
        },
        "conversations": {k: len(v[1]) for k, v in sets.items()},
        "grid": list(GRID),
        "rule": "per encoder, the embedding window, threshold, overlap marking, smallest "
        "cluster and keep-far distance with the lowest mean DER (collar 0.25 s) over the dev "
        "sets (clean, 10 % overlap, noise10 and, since stop 51, room); ties: no overlap "
        "marking first, the larger "
        "smallest cluster, small clusters absorbed rather than kept, the longer window, then "
        "the middle of the tied thresholds; then (since stop 51) the shortest speech region "
        "that a cluster under the smallest size keeps as a voice by holding every window of "
        "it (never, 0.5-2 s) with the lowest mean dev DER; ties: never, else the longest; "
        "then the cosine to the mean of two other clusters' centres above which a cluster of "
        "under twice the smallest size, nearer that mean than either, is absorbed as their "
        "overlap (never, 0.9-0.7) with the lowest mean dev DER; ties: never, else the "
        "highest; then the cosine above which clusters whose "
        "speech is embedded again are merged (never, 0.95-0.7) with the lowest mean dev "
        "DER; ties: never, else the highest; "
        "then the naming threshold (the verification threshold plus an offset): of those "
        "naming at most 1 dev stranger in 50 as an enrolled voice (at least 1 allowed; "
        "the fewest where none is that few), the one naming the most enrolled dev speech "
        "right, then the middle of the tied ones (dev conversations with every other dev "
        "voice enrolled), for each way to name a cluster (its own speech, up to 30 s, "
        "embedded again as one recording; or the centre of its window embeddings); then "
        "of the ways within that bound at their thresholds, the one naming the most "
        "enrolled dev speech right; ties: the centroid",
        **report,
        "targets": TARGETS,
    }
    write_result(args.json, result)
    print(f"-> {args.json}")
    if args.write:
        dest = Path(__file__).resolve().parents[1] / "src/whichvoice/data/diarize"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "thresholds.json").write_text(json.dumps({
            "source": f"benchmarks/diarize.py, commit {made['commit'][:12]}: the dev-chosen "
            "clustering distance threshold of each encoder",
            "thresholds": thresholds_out,
            "overlap": {report["encoders"][n]: report["chosen"][n]["overlap"] for n in encoders},
            "min_cluster_s": {
                report["encoders"][n]: report["chosen"][n]["min_cluster_s"] for n in encoders
            },
            "keep_far": {report["encoders"][n]: report["chosen"][n]["keep_far"] for n in encoders},
            "keep_region_s": {
                report["encoders"][n]: report["chosen"][n]["keep_region_s"]["seconds"]
                for n in encoders
            },
            "mixture_above": {
                report["encoders"][n]: report["chosen"][n]["mixture_above"]["cosine"]
                for n in encoders
            },
            "window": {
                report["encoders"][n]: [report["chosen"][n]["window_s"],
                                        report["chosen"][n]["hop_s"]]
                for n in encoders
            },
            "live_accept": {k: v["threshold"] for k, v in live.items()},
            "live_turn_accept": {k: v["turn"]["threshold"] for k, v in live.items()},
            "live_join": {
                report["encoders"][n]: LIVE_JOIN.get(n, thresholds_out[report["encoders"][n]])
                for n in encoders
            },
            "naming": naming_out,
            "naming_other": naming_other_out,
            "naming_speech_s": speech_out,
            "merge_speech": merge_out,
        }, indent=2) + "\n")  # fmt: skip
        print(f"thresholds written to {dest}")


if __name__ == "__main__":
    main()
