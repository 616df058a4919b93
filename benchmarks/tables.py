"""The tables of measured figures in README.md and docs/: rendered from the results JSON (and
the condition suite's own definitions), never typed by hand.

A table lives between two markers in a markdown file:

    <!-- table: NAME -->
    ...
    <!-- /table -->

``python benchmarks/tables.py`` rewrites every such block; ``--check`` fails when one differs
from what the JSON gives (tests/test_docs.py runs the check).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CARD = ROOT / "src" / "whichvoice" / "data" / "classifier" / "MODEL_CARD.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), CARD]
BLOCK = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _wilson(accuracy: float, n: int) -> tuple[float, float]:
    from whichvoice.scoring import wilson

    return wilson(round(accuracy * n), n)


def _rate(p: dict) -> str:
    """A ``scoring.proportion``: value (interval)."""
    return f"{_pct(p['value'])} ({_interval(*p['ci95'])})"


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def _interval(lo: float, hi: float, digits: int = 1) -> str:
    return f"{100 * lo:.{digits}f}-{100 * hi:.{digits}f} %"


def _made(result: dict) -> str:
    if "command" not in result:
        return (
            "an older run that recorded neither its command nor its code (to be rerun: "
            f"`python benchmarks/{result['benchmark']}.py`)"
        )
    dirty = " (uncommitted changes)" if result.get("dirty") else ""
    return (
        f"`{result['command']}`, commit `{result['commit'][:12]}`{dirty}, "
        f"{result['date'][:10]}, {result['machine']['cpus']} cores "
        f"({result['machine']['cpu']})"
    )


def conditions_table() -> str:
    from whichvoice.conditions import SUITE

    rows = ["| condition | family | definition |", "|---|---|---|"]
    rows += [f"| `{c.name}` | {c.family} | {c.definition} |" for c in SUITE]
    return "\n".join(rows)


def robustness_table(name: str = "robustness") -> str:
    r = _load(name)
    models = r["models"]
    # issue 17's targets are the default8 model's; other voice sets have none
    targets = r["targets_default_model"] if r["corpus"]["voices"] == "default8" else {}
    head = "| condition | " + " | ".join(m["name"] for m in models) + " |"
    head += " target (default) |" if targets else ""
    rows = [head, "|---|" + "---:|" * (len(models) + bool(targets))]
    for c in models[0]["conditions"]:
        cells = []
        for m in models:
            x = m["conditions"][c]
            cells.append(f"{_pct(x['accuracy'])} ({_interval(*x['ci95'])})")
        target = f" {_pct(targets[c], 0) if c in targets else ''} |" if targets else ""
        rows.append(f"| `{c}` | " + " | ".join(cells) + f" |{target}")
    files = models[0]["conditions"]["clean"]["files"]
    rows += [
        "",
        f"File-level accuracy (95 % Wilson interval) on {_held_out(r)}, {files} files per "
        f"condition. Made by {_made(r)}.",
    ]
    if (verdicts := r.get("default_model_targets")) and targets:
        missed = [f"`{c}`" for c, v in verdicts.items() if not v["met"]]
        short = [
            f"`{c}`" for c, v in verdicts.items() if v["met"] and not v["interval_above_target"]
        ]
        rows += [
            "",
            f"Targets of the default model: {len(verdicts) - len(missed)} of {len(verdicts)} "
            "met"
            + (f"; not met: {', '.join(missed)}" if missed else "")
            + ". "
            + (
                f"For {', '.join(short)} the interval still reaches below the target: "
                "the target is met by the measured figure, not shown beyond doubt."
                if short
                else "Every interval lies at or above its target."
            ),
        ]
    return "\n".join(rows)


def voices_table(name: str = "robustness-mixed16") -> str:
    """The default model's clean accuracy per voice, grouped by engine."""
    r = _load(name)
    model = next(m for m in r["models"] if m["name"] == "default")
    rows = ["| engine | voice | files | accuracy (95 % interval) |", "|---|---|---:|---:|"]
    for v in sorted(model["per_voice"], key=lambda v: v["voice"]):
        engine, voice = v["voice"].split(":", 1)
        rows.append(f"| {engine} | `{voice}` | {v['n']} | {_rate(v)} |")
    rows += ["", f"Clean test files, file level. Made by {_made(r)}."]
    return "\n".join(rows)


def families_table() -> str:
    """Verification per engine family (benchmarks/families.py)."""
    r = _load("families")
    rows = [
        "| family | voices | encoder | EER clean (95 % interval) | EER hard | false rejection "
        "(clean, dev threshold) | false acceptance (clean) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    encoders = list(r["results"])
    for family in r["results"][encoders[0]]["clean"]:
        for e in encoders:
            c, h = r["results"][e]["clean"][family], r["results"][e]["hard"][family]
            at = c["at_dev_threshold"]
            rows.append(
                f"| {family} | {len(c['voices'])} | {e} | {_pct(c['eer'], 2)} "
                f"({_interval(*c['eer_ci95'], 2)}) | {_pct(h['eer'], 2)} "
                f"({_interval(*h['eer_ci95'], 2)}) | {_rate(at['false_rejection'])} | "
                f"{_rate(at['false_acceptance'])} |"
            )
    clean = r["results"][encoders[0]]["clean"]
    targets = sum(f["target_trials"] for f in clean.values())
    named = [f"`{v}`" for v in r["test_voices"] if not v.startswith("espeak")]
    rows += [
        "",
        f"{len(r['test_voices'])} test voices ({', '.join(named)} and "
        f"{len(r['test_voices']) - len(named)} random espeak-ng variants of the "
        f"test pool), {r['test_clips_per_voice']} test-pool sentences each, {targets} same-voice "
        f"clean trials in all; thresholds from {len(r['dev_voices'])} dev voices; intervals "
        f"from a {r['interval']}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def human_table() -> str:
    """The encoders side by side on real people (benchmarks/human.py)."""
    r = _load("human")
    rows = [
        "| encoder | EER (95 % interval) | top-1 identification | false rejection at its "
        "threshold | false acceptance |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, x in r["results"].items():
        at = x["at_shipped_threshold"]
        rows.append(
            f"| {name} | {_pct(x['eer'], 2)} ({_interval(*x['eer_ci95'], 2)}) | "
            f"{_rate(x['top1'])} | {_rate(at['false_rejection'])} | "
            f"{_rate(at['false_acceptance'])} |"
        )
    first = next(iter(r["results"].values()))
    rows += [
        "",
        f"{len(r['speakers'])} speakers of {r['data']}; {r['clips_per_speaker']} clips each of "
        f"{r['digits_per_clip']} digits (~3 s), {first['target_trials']} same-speaker and "
        f"{first['nontarget_trials']} different-speaker trials; each encoder at its shipped "
        "threshold (set on every dev trial pooled: TTS voices and these speakers, clean and "
        f"degraded); intervals: {r['interval']}. "
        "auto's weights were chosen on these speakers among others: its row is a dev figure. "
        f"Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def fusion_table() -> str:
    """Candidate fusions on dev trials (benchmarks/fusion.py): the named ones and the pick
    (the grid's other points are in the JSON)."""
    r = _load("fusion-dev")
    kinds = [k for k in ("tts", "human", "tts-all", "human-all") if k in r["trials"]]
    heads = {"tts": "TTS, clean", "human": "human, clean", "tts-all": "TTS, every condition",
             "human-all": "human, every condition"}  # fmt: skip
    timed = "speed" in r
    # rule version 4 scores each degraded condition alone too: the worst cell and its ratio
    by_cell = "tts hard" in r["trials"]
    rows = [
        "| candidate | weights | "
        + " | ".join(f"EER, {heads[k]}" for k in kinds)
        + (" | worst cell: (EER + one error) / (best single's + one error)" if by_cell else "")
        + (" | x real time |" if timed else " |"),
        "|---|---|" + "---:|" * (len(kinds) + timed + by_cell),
    ]

    def worst(c: dict) -> str:
        eps, best = r["one_error"], r["best_single_eer"]
        ratio, cell = max(((c[f"eer_{k}"] + eps[k]) / (b + eps[k]), k) for k, b in best.items())
        return f" | {ratio:.2f} ({cell})"

    for label, c in r["candidates"].items():
        if f"eer_{kinds[0]}_ci95" not in c:
            continue
        weights = ", ".join(f"{n} {w:.2f}" for n, w in c["weights"].items() if w > 0)
        mark = " (chosen)" if label == r["chosen"] else ""
        cells = " | ".join(
            f"{_pct(c[f'eer_{k}'], 2)} ({_interval(*c[f'eer_{k}_ci95'], 2)})" for k in kinds
        )
        speed = f" | {c['times_real_time']:.0f}x" if timed else ""
        rows.append(f"| {label}{mark} | {weights} | {cells}{worst(c) if by_cell else ''}{speed} |")
    t = r["trials"]
    every = ""
    if "tts-all" in t:
        every = (
            f" Every condition: the clean clips and the same voices' clips degraded "
            f"({', '.join(r['conditions'][1:])}), pooled under one threshold: "
            f"{t['tts-all']['target']} and {t['tts-all']['nontarget']} TTS trials, "
            f"{t['human-all']['target']} and {t['human-all']['nontarget']} human ones."
        )
    rows += [
        "",
        f"Dev trials only: {t['tts']['target']} same-voice and {t['tts']['nontarget']} "
        f"different-voice clean TTS trials (the dev pool), {t['human']['target']} and "
        f"{t['human']['nontarget']} human ones (the 6 human-dev speakers; an interval over 6 "
        f"speakers is wide).{every} Intervals: bootstrap over voices. The rule (fixed "
        f"before its run; dev figures only ever led to a new version): "
        f"{r['rule']}. The learned weights are scored on the trials they were "
        f"fitted on."
        + (
            f" Speed: {r['speed']['clips']} dev clips embedded by each set of encoders, "
            f"{r['speed']['method']}."
            if timed
            else ""
        )
        + f" Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def windows_table() -> str:
    """Window density of the pretrained encoders on dev trials (benchmarks/windows.py)."""
    r = _load("windows-dev")
    kinds = ("tts", "tts-hard", "human")
    rows = [
        "| encoder | windows | EER, TTS dev | EER, TTS dev, hard | EER, human dev | x real time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, densities in r["encoders"].items():
        for density in ("dense", "side by side"):
            x = densities[density]
            mark = " (chosen)" if r["chosen"][name] == density else ""
            cells = " | ".join(
                f"{_pct(x[f'eer_{k}'], 2)} ({_interval(*x[f'eer_{k}_ci95'], 2)})" for k in kinds
            )
            rows.append(f"| {name} | {density}{mark} | {cells} | {x['times_real_time']:.0f} |")
    first = next(iter(r["encoders"].values()))["dense"]
    t = {k: first[f"trials_{k}"] for k in kinds}
    rows += [
        "",
        f"Dev trials only, the same for every row: {t['tts']['target']} same-voice and "
        f"{t['tts']['nontarget']} different-voice TTS trials on whole clips and as many on "
        f"hard ones, {t['human']['target']} and {t['human']['nontarget']} human ones. "
        f"Intervals: bootstrap over voices. The rule, fixed before scoring: {r['rule']}. "
        f"Speed: {r['timing']}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def speed_table() -> str:
    """Each encoder's embedding speed, side by side in one run (benchmarks/speed.py)."""
    r = _load("speed")
    rows = [
        "| encoder | x real time (median) | relative to the bundled encoder |",
        "|---|---:|---:|",
    ]
    for name, x in r["results"].items():
        rows.append(
            f"| {name} | {x['times_real_time']:.0f} | {x.get('relative_to_bundled', 1):.2f} |"
        )
    rows += [
        "",
        f"{r['clips']} clips, {r['audio_seconds'] / 60:.0f} min of audio; {r['method']}. "
        f"Target for the default (auto): {r['target']['times_real_time']:.0f}x real time. "
        f"Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def snorm_table() -> str:
    """AS-norm against a cohort, per encoder, on dev trials (benchmarks/snorm.py)."""
    r = _load("snorm-dev")
    kinds = ("tts", "tts-hard", "human")
    rows = [
        "| encoder | scores | EER, TTS dev | EER, TTS dev, hard | EER, human dev |",
        "|---|---|---:|---:|---:|",
    ]
    for name, x in r["encoders"].items():
        for key, label in (("raw", "cosine"), ("as_norm", "AS-norm")):
            cells = " | ".join(
                f"{_pct(x[k][key]['eer'], 2)} ({_interval(*x[k][key]['eer_ci95'], 2)})"
                for k in kinds
            )
            mark = " (helps)" if key == "as_norm" and x["helps"] else ""
            rows.append(f"| {name} | {label}{mark} | {cells} |")
    c = r["cohort"]
    rows += [
        "",
        f"Cohort: {c['clips']} clips of {c['voices']} voices ({c['from']}), the top {c['top']} "
        f"scores. Intervals: bootstrap over voices. The rule, fixed before scoring: "
        f"{r['rule']}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def quality_table() -> str:
    """A threshold that follows each clip's quality, on dev trials (benchmarks/quality.py)."""
    r = _load("quality-dev")
    conds = ("hard", "phone", "mp3-24k", "room")
    rows = [
        "| encoder | threshold on | "
        + " | ".join(f"TTS {c}" for c in conds)
        + " | people (mean) | mean false rejection | highest false acceptance | helps |",
        "|---|---|" + "---:|" * (len(conds) + 4),
    ]
    for name, variants in r["encoders"].items():
        for label, x in variants.items():
            held = x["left_out"]
            people = sum(held[f"human {c}"]["false_rejection"]["value"] for c in conds) / len(conds)
            cells = " | ".join(_rate(held[f"tts {c}"]["false_rejection"]) for c in conds)
            rows.append(
                f"| {name} | {'the score' if label == 'score only' else 'score + ' + label} | "
                f"{cells} | {_pct(people)} | {_pct(x['left_out_mean_false_rejection'])} | "
                f"{_pct(x['left_out_max_false_acceptance'], 3)} | "
                f"{'yes' if x['helps'] else 'no'} |"
            )
    n = r["scored_clips"]
    rows += [
        "",
        "False rejection of each degraded condition's dev clips (95 % Wilson interval), and "
        "the highest false acceptance (both kinds of a condition pooled), at a threshold "
        f"fitted and set ({_pct(r['target_far'], 2)} false acceptances) on the other "
        "conditions' dev trials: each condition left out in turn. Scored dev clips: "
        f"TTS {n['tts hard']} hard, {n['tts phone']} in each channel; people {n['human hard']} "
        f"hard, {n['human phone']} in each channel. The rule, fixed before scoring: "
        f"{r['rule']}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def quality_measures_table() -> str:
    """The recording quality warnings by condition, on dev clips
    (benchmarks/quality_measures.py)."""
    r = _load("quality-measures")
    kinds = ("noisy", "clipped", "narrow band")
    by = r["by_condition"]
    rows = [
        "| condition | TTS voices: noisy / clipped / narrow band | people: noisy / clipped / "
        "narrow band |",
        "|---|---|---|",
    ]
    for name in by["tts"]:
        cells = []
        for who in ("tts", "human"):
            x = by[who][name]
            cells.append(
                " / ".join(
                    f"{x[k]['k']} of {x['clips']}"
                    + (f" ({_interval(*x[k]['ci95'], 0)})" if x[k]["k"] else "")
                    for k in kinds
                )
            )
        rows.append(f"| `{name}` | {cells[0]} | {cells[1]} |")
    o = r["offset"]
    errors = "; ".join(
        f"{snr}: {e['median_error_db']:+.1f} dB ({e['p5_p95_db'][0]:+.1f} to "
        f"{e['p5_p95_db'][1]:+.1f})"
        for snr, e in o["estimate_error_with_shipped_offset"].items()
    )
    t = r["thresholds"]
    from whichvoice.scoring import wilson

    none = "; ".join(
        f"0 of {n}: at most {_pct(wilson(0, n)[1])}"
        for n in sorted({by[who]["clean"]["clips"] for who in ("tts", "human")}, reverse=True)
    )
    rows += [
        "",
        f"Dev clips: {r['clips']['tts']} of {len(r['voices']['tts'])} TTS voices (dev-pool "
        f"espeak-ng variants and the other engines' dev voices reading dev sentences) and "
        f"{r['clips']['human']} of the {len(r['voices']['human'])} human-dev speakers (digits "
        "joined, ~3 s), each made into every condition of the evaluation suite "
        "(`whichvoice.conditions`) and decoded as a user's file is. Warnings: noisy under "
        f"{t['noisy_db']:g} dB estimated SNR, clipped at {_pct(t['clipped_share'], 0)} of the "
        f"samples in flat tops or more, narrow band under {t['narrow_hz']:.0f} Hz. The SNR "
        f"estimate's offset: the median of (spread - mixing SNR) over {o['mixtures']} "
        f"mixtures with white and pink noise at 5-20 dB, {o['median_spread_over_snr_db']:.2f} "
        f"dB, shipped as {o['shipped_offset_db']:g} dB; the estimate's error with it, median "
        f"(5th to 95th percentile): {errors}. Intervals: Wilson, 95 % ({none}). "
        f"Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def _held_out(r: dict) -> str:
    """Which data a closed-set figure was scored on and what the model trained on."""
    trained = f"trained on {r['corpus']['voices']} x {r['corpus']['sentences']} bundled sentences"
    if "held_out" not in r:  # results from before the dev and test pools
        return f"the {r['split']} split of the training corpus's sentences ({trained})"
    h = r["held_out"]
    return (
        f"the {h['pool']} set, {h['voices']} x {h['sentences']} sentences of the {h['pool']} "
        f"pool ({trained}; no sentence or clip shared)"
    )


def _verify_rates(r: dict) -> str:
    """How verify.json's rates were given intervals: over voices (stop 66 on) or clips."""
    clean = r["results"]["whichvoice"]["clean"]["unknown_rejected"]
    if "effective_n" in clean:
        return ("Wilson at the effective count with voices as clusters (pairs of voices for "
                "false acceptances)")  # fmt: skip
    return "Wilson over clips (narrower than the data support: before stop 66)"


def verify_table() -> str:
    r = _load("verify")
    encoders = [e for e in r["results"] if "error" not in r["results"][e]]
    rows = [
        "| condition | encoder | EER (95 % interval) | minDCF(0.01) | unknown rejected | "
        "false rejection |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in ["clean", "hard", *r["channels"]]:
        for e in encoders:
            x = r["results"][e][c]
            rows.append(
                f"| `{c}` | {e} | {_pct(x['eer'], 2)} ({_interval(*x['eer_ci95'], 2)}) | "
                f"{x['min_dcf_0.01']:.3f} ({x['min_dcf_0.01_ci95'][0]:.3f}-"
                f"{x['min_dcf_0.01_ci95'][1]:.3f}) | {_rate(x['unknown_rejected'])} | "
                f"{_rate(x['false_rejection'])} |"
            )
    for e in encoders:
        x = r["results"][e].get("human")
        if x is None:  # results from before the human trials
            continue
        rows.append(
            f"| human (dev) | {e} | {_pct(x['eer'], 2)} ({_interval(*x['eer_ci95'], 2)}) | "
            f"{x['min_dcf_0.01']:.3f} ({x['min_dcf_0.01_ci95'][0]:.3f}-"
            f"{x['min_dcf_0.01_ci95'][1]:.3f}) | | "
            f"{_rate(x['at_dev_threshold']['false_rejection'])} |"
        )
    for c in ["hard", *r["channels"]]:
        for e in encoders:
            x = r["results"][e].get("human-degraded", {}).get(c)
            if x is None:  # results from before the degraded human trials
                continue
            rows.append(
                f"| human `{c}` (dev) | {e} | {_pct(x['eer'], 2)} "
                f"({_interval(*x['eer_ci95'], 2)}) | | | "
                f"{_rate(x['at_dev_threshold']['false_rejection'])} |"
            )
    clean = r["results"]["whichvoice"]["clean"]
    rule = r["results"]["whichvoice"]["dev"]["threshold_rule"]
    human = next((r["results"][e]["human"] for e in encoders if "human" in r["results"][e]), None)
    rows += [
        "",
        f"{len(r['test_voices'])} test voices, {clean['target_trials']} same-voice and "
        f"{clean['nontarget_trials']} different-voice clean trials; each encoder's threshold: "
        f"{rule} ({len(r['dev_voices'])} dev voices)."
        + (
            " Unknown rejected and false rejection: open-set identification at identify's "
            f"threshold for the {len(r['test_voices']) // 2} voices enrolled ("
            + ", ".join(f"{e} {r['results'][e]['dev']['identify_threshold']:.3f}" for e in encoders)
            + "), raised from each encoder's so that a stranger is named at most 1 time in 100."
            if "identify_threshold" in r["results"]["whichvoice"]["dev"]
            else ""
        )
        + (
            f" Human rows: the {human['voices']} human-dev speakers (digits), "
            f"{human['target_trials']} same-speaker and {human['nontarget_trials']} "
            "different-speaker trials at the same dev threshold: dev figures (the fusion and "
            "the windows were chosen on these speakers), not held-out ones."
            if human
            else ""
        )
        + f" Intervals: EER and minDCF, a bootstrap over voices; rates, {_verify_rates(r)}."
        + f" Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def default_bar_table() -> str:
    """Issue 20's bar on the test pool's TTS voices: the default (auto) against the bundled
    encoder condition by condition, and issue 6's targets for the default."""
    r = _load("verify")
    res = r["results"]
    if "auto" not in res or "whichvoice" not in res:
        return "_Not measured: verify.json holds no auto and bundled results side by side._"
    rows = [
        "| condition | auto EER | bundled encoder EER | auto no worse (point) | "
        "auto's interval reaches the bundled point |",
        "|---|---:|---:|---|---|",
    ]
    for c in ["clean", "hard", *r["channels"]]:
        a, b = res["auto"][c], res["whichvoice"][c]
        rows.append(
            f"| `{c}` | {_pct(a['eer'], 3)} ({_interval(*a['eer_ci95'], 3)}) | "
            f"{_pct(b['eer'], 3)} ({_interval(*b['eer_ci95'], 3)}) | "
            f"{'yes' if a['eer'] <= b['eer'] else 'no'} | "
            f"{'yes' if a['eer_ci95'][0] <= b['eer'] else 'no'} |"
        )
    rows += ["", "| issue 6 target (auto, test) | target | value (95 % interval) | met | "
             "shown by the interval |", "|---|---:|---:|---|---|"]  # fmt: skip
    for condition, limits in r["targets"].items():
        for key, limit in limits.items():
            x = res["auto"][condition]
            if key in ("eer", "min_dcf_0.01"):
                value, (lo, hi) = x[key], x[f"{key}_ci95"]
                met, shown = value <= limit, hi <= limit
            else:
                value, (lo, hi) = x[key]["value"], x[key]["ci95"]
                high = key == "unknown_rejected"
                met = value >= limit if high else value <= limit
                shown = lo >= limit if high else hi <= limit
            if key.startswith("min_dcf"):
                cells = f"{limit:.4f} | {value:.4f} ({lo:.4f}-{hi:.4f})"
            else:
                cells = f"{_pct(limit, 3)} | {_pct(value, 3)} ({_interval(lo, hi, 3)})"
            rows.append(
                f"| {condition} {key} | {cells} | {'yes' if met else 'no'} | "
                f"{'yes' if shown else 'no'} |"
            )
    rows += [
        "",
        f"Test draw {r.get('test_draw', 1)}, the same trials for both encoders (the verify "
        f"table's); intervals: bootstrap over voices (EER), {_verify_rates(r)} (rates). "
        "Unknown rejected and false rejection at identify's threshold for half the voices "
        f"enrolled. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def identify_dev_table() -> str:
    """identify's open-set figure on halves of the dev voices (benchmarks/identify_dev.py)."""
    r = _load("identify-dev")
    rows = [
        "| stranger named at most (per answer) | clean strangers named, median / 90th "
        "percentile of splits | splits naming over 1 % | hard clips rejected (median) |",
        "|---|---:|---:|---:|",
    ]
    for rate, x in r["rates"].items():
        rows.append(
            f"| {rate.replace('/', ' in ')} | {_pct(x['strangers_named_median'], 2)} / "
            f"{_pct(x['strangers_named_p90'], 2)} | {_rate(x['splits_over_1pct'])} | "
            f"{_pct(x['hard_rejected_median'])} |"
        )
    pairs = "; ".join(
        f"`{p['voice']}` named as `{p['named_as']}` ({p['clips']} clips)"
        for p in r["passing_pairs"][:4]
    )
    v = r["split_voices"]
    rows += [
        "",
        f"Dev voices only ({r['dev_voices']}), encoder {r['encoder']}. {r['splits']} splits: "
        f"the threshold and its tail set on {v['calibration']} voices (and the human-dev "
        f"speakers), the open set on the other {v['enrolled'] + v['strangers']} "
        f"({v['enrolled']} enrolled). With every dev voice enrolled, "
        f"{r['passing_clips']['k']} of {r['clean_clips']} clean clips pass identify's "
        f"threshold for {r['gallery']} voices ({r['threshold']:.3f}) against a voice not "
        f"their own: {pairs or 'none'}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def strangers_table() -> str:
    """identify's strangers over several fresh test draws (benchmarks/strangers.py)."""
    r = _load("strangers")
    draws = r["draws"]
    rows = [
        "| encoder | identify's threshold | clean strangers answered unknown (95 % interval "
        "over voices) | interval over clips (Wilson) | "
        + " | ".join(f"draw {d}" for d in draws)
        + " | enrolled clips rejected | enrolled clips misnamed |",
        "|---|---:|---:|---:|" + "---:|" * len(draws) + "---:|---:|",
    ]
    for name, x in r["results"].items():
        s = x["strangers_rejected"]
        thresholds = " / ".join(f"{t:.3f}" for t in sorted(set(x["thresholds"].values())))
        by_draw = " | ".join(
            f"{_pct(b['value'], 2)} ({_interval(*b['ci95'], 2)})"
            for b in (x["by_draw"][str(d)] for d in draws)
        )
        rows.append(
            f"| {name} | {thresholds} | {_pct(s['value'], 2)} ({_interval(*s['ci95'], 2)}) | "
            f"{_interval(*s['ci95_wilson_over_clips'], 2)} | {by_draw} | "
            f"{_rate(x['enrolled_rejected'])} | {_rate(x['enrolled_misnamed'])} |"
        )
    shown = "auto" if "auto" in r["results"] else next(iter(r["results"]))
    pairs = "; ".join(
        f"`{p['stranger']}` named as `{p['named_as']}` ({p['clips']} clips)"
        for p in r["results"][shown]["named_pairs"][:3]
    )
    refused = [v for vs in r["voices_enroll_refused"].values() for v in vs]
    c = r["clips_per_voice"]
    rows += [
        "",
        f"Test draws {', '.join(map(str, draws))} (read by no other benchmark; nothing is "
        f"chosen from their figures), {r['voices_per_draw']} voices each, {len(refused)} left "
        "out because `enroll` refuses them (silero-vad hears no speech in an enrollment clip"
        + (f": {', '.join(f'`{v}`' for v in refused)}" if refused else "")
        + f"); each voice enrolled from {c['enroll']} clips cut to {c['enroll_seconds']:g} s "
        f"of speech, {c['test']} clean clips scored. {r['splits_per_draw']} splits a draw: "
        "half the voices enrolled, the others strangers, scored against the enrolled half at "
        "identify's threshold for that many voices from each encoder's shipped calibration. "
        f"Interval: {r['interval']}. The most named strangers ({shown}): {pairs or 'none'}. "
        f"Target (issue 6): {_pct(r['target']['strangers_rejected'], 0)}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def prototypes_table() -> str:
    """Multi-condition enrollment against the clean mean alone, on the same trials and
    embeddings of one verify.py run, each with its own dev threshold."""
    r = _load("verify")
    encoders = [e for e in r["results"] if "clean_prototype_only" in r["results"][e]]
    if not encoders:
        return "_Not measured yet: verify.json is from before enrollment kept prototypes._"
    rows = [
        "| trials | encoder | EER, prototypes | EER, clean mean only | false rejection, "
        "prototypes | false rejection, clean mean only |",
        "|---|---|---:|---:|---:|---:|",
    ]
    conditions = ["clean", "hard", *r["channels"]]
    for key in [*conditions, *(f"human {c}" for c in conditions)]:
        for e in encoders:
            res = r["results"][e]
            old = res["clean_prototype_only"][key]
            if key.startswith("human "):
                c = key.split(" ", 1)[1]
                new = res["human"] if c == "clean" else res["human-degraded"][c]
                new_fr = new["at_dev_threshold"]["false_rejection"]
                name = f"human `{c}` (dev)"
            else:
                new = res[key]
                new_fr = new["at_dev_threshold"]["false_rejection"]
                name = f"`{key}`"
            rows.append(
                f"| {name} | {e} | {_pct(new['eer'], 2)} | {_pct(old['eer'], 2)} | "
                f"{_rate(new_fr)} | {_rate(old['false_rejection'])} |"
            )
    thresholds = ", ".join(
        f"{e} {r['results'][e]['dev']['threshold']:.3f} "
        f"({r['results'][e]['clean_prototype_only']['dev']['threshold']:.3f})"
        for e in encoders
    )
    rows += [
        "",
        "Both columns score the same embeddings of the same test-pool trials (human rows: the "
        "human-dev speakers, dev figures). Prototypes: each voice enrolled from its 3 clean "
        "clips and their noise, room and telephone copies (`whichvoice.prototypes`), a clip "
        "scored by its voice's best prototype (what `enroll`, `verify` and `identify` do). "
        "Clean mean only: the clean prototype alone (what enrollment kept before). Each has "
        "its own threshold, set by the same rule on the dev trials scored its way; dev "
        f"thresholds, prototypes (clean mean only): {thresholds}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def summary_table() -> str:
    """The README's few lines: the default model's accuracy (its best and worst conditions)
    and the bundled encoder's EER, each with its interval and count."""
    rob, ver = _load("robustness"), _load("verify")
    default = next(m for m in rob["models"] if m["name"] == "default")["conditions"]
    worst = sorted(default.items(), key=lambda kv: kv[1]["accuracy"])[:3]
    rows = ["| what | measured (95 % interval) | on |", "|---|---|---|"]
    clean = default["clean"]
    rows.append(
        f"| default model, clean | {_pct(clean['accuracy'])} ({_interval(*clean['ci95'])}) "
        f"| {clean['files']} test files, 8 voices |"
    )
    for name, x in worst:
        rows.append(
            f"| default model, `{name}` (one of its 3 worst conditions) | "
            f"{_pct(x['accuracy'])} ({_interval(*x['ci95'])}) | {x['files']} files |"
        )
    for c in ("clean", "hard"):
        for e in ("whichvoice", "resemblyzer"):
            if e not in ver["results"] or "error" in ver["results"][e]:
                continue
            x = ver["results"][e][c]
            name = "bundled encoder" if e == "whichvoice" else "resemblyzer"
            rows.append(
                f"| {name}, verification EER, {c} | {_pct(x['eer'], 2)} "
                f"({_interval(*x['eer_ci95'], 2)}) | {x['target_trials']} same-voice "
                f"trials, {x['voices']} test voices |"
            )
    rows += [
        "",
        f"From `benchmarks/results/robustness.json` (commit `{rob['commit'][:12]}`) and "
        f"`verify.json` (commit `{ver['commit'][:12]}`); all conditions and figures: "
        "[docs/evaluation.md](docs/evaluation.md#results).",
    ]
    return "\n".join(rows)


def train_table() -> str:
    r = _load("train")
    rows = [
        "| model | features | preparation | training (loop) | test files, end to end | "
        "inference, batched | one 3 s clip |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in r["models"]:
        lo, hi = m.get("test_file_acc_end_to_end_ci95") or _wilson(
            m["test_file_acc_end_to_end"], m["test_files"]
        )
        rows.append(
            f"| {m['model']} | {m['features']} | {m['prepare_s']:.1f} s | "
            f"{m['train_loop_s']:.1f} s, {m['epochs']} epochs, {m['train_clips_per_s']:,.0f} "
            f"clips/s | {_pct(m['test_file_acc_end_to_end'])} ({_interval(lo, hi)}) of "
            f"{m['test_files']} | {m['inference_batch_clips_per_s']:,.0f} clips/s | "
            f"{m['inference_single_ms_3s_clip']:.1f} ms |"
        )
    d = r["default_vs_seed"]
    rows += [
        "",
        f"The default model against the talk's, side by side in one run: it trains "
        f"{d['train_speedup']}× faster ({d['train_speedup_incl_features']}× counting feature "
        f"preparation) and infers {d['inference_batch_speedup']}× faster batched. "
        f"{r['corpus']['clips']:,} clips ({r['corpus']['voices']} × "
        f"{r['corpus']['sentences']} sentences), device {r['device']}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def serve_table() -> str:
    """The server's variants side by side in one run (benchmarks/serve.py)."""
    r = _load("serve")
    rows = [
        "| workers | server | concurrency | requests | req/s | p50 | p99 | errors | client CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in r["results"]:
        levels = [*w["levels"], *([{**w["soak"], "soak": True}] if "soak" in w else [])]
        for x in levels:
            label = f"{x['concurrency']} (soak)" if x.get("soak") else str(x["concurrency"])
            cpu = x.get("client_cpu_per_s")
            rows.append(
                f"| {w['workers']} | {w.get('variant', 'this code')} | {label} | "
                f"{x['requests']:,} | {x['requests_per_s']:.1f} | {x['p50_ms']:.1f} ms | "
                f"{x['p99_ms']:.1f} ms | {x['errors']} | "
                f"{'' if cpu is None else f'{cpu:.2f} core'} |"
            )
    ratios = "; ".join(
        f"{w['variant']} with {w['workers']} worker(s): {w['c8_vs_previous']}x"
        for w in r["results"]
        if "c8_vs_previous" in w and w["variant"] != "previous"
    )
    mem = "; ".join(
        f"{w['workers']} worker(s), {w.get('variant', 'this code')}: "
        f"{w['memory_mb_before']:.0f} MB before the soak, {w['memory_mb_after']:.0f} MB after"
        for w in r["results"]
        if "memory_mb_before" in w
    )
    target = r.get("target")
    rows += [
        "",
        (
            f"Requests/s at concurrency 8 against the previous code's ({r['baseline'][:12]}), "
            f"same workers: {ratios} (target {target['c8_vs_previous']}x with p99 <= "
            f"{target['p99_ms']:.0f} ms). "
            if ratios and target
            else ""
        )
        + f"{r['endpoint']}, client: {r['client']}; client CPU: the client's own CPU seconds "
        f"per second. Server memory (RSS): {mem}. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def limits_table() -> str:
    """Each stage's cost, the decode limit and batch inference against it
    (benchmarks/limits.py)."""
    r = _load("limits")
    st = r["stages"]
    names = {
        "decode": "decode (file -> float32)",
        "resample": "resample to 16 kHz",
        "speech": "speech detection (trim, level)",
        "windows": "windows",
        "features": "log-mel",
        "network_torch": "log-mel + network, torch",
        "network_onnx": "log-mel (torch) + network, onnxruntime",
        "network_int8": "log-mel (torch) + network, onnxruntime int8",
        "openset_probe_torch": "open set: encoder, 32 middle windows a call, `--backend torch`",
        "openset_probe_onnx": "open set: encoder, 32 middle windows a call, onnxruntime",
        "openset_probe_int8": "open set: encoder, 32 middle windows a call, onnxruntime int8",
        "answer_json": "answer + JSON",
    }
    rows = [
        "| stage, one thread | ms a clip | ms a second of audio |",
        "|---|---:|---:|",
    ]
    for key, x in st["stages_ms"].items():
        rows.append(
            f"| {names.get(key, key)} | {x['ms_per_clip']:.2f} | {x['ms_per_audio_s']:.3f} |"
        )
    limit = r["decode_limit_clips_per_s"]
    rows += [
        "",
        "| end to end (`predict --output`) | clips/s | x the decode limit | x its stages' sum "
        "| accuracy |",
        "|---|---:|---:|---:|---:|",
        f"| decode limit, 1 process | {limit['1']:.0f} | | | |",
        f"| decode limit, 2 processes | {limit['2']:.0f} | 1.00 | | |",
    ]
    ms = {k: x["ms_per_clip"] for k, x in st["stages_ms"].items()}
    common = sum(ms[k] for k in ("decode", "resample", "speech", "windows", "answer_json"))
    network = {"torch": "network_torch", "onnx": "network_onnx", "onnx-int8": "network_int8"}
    # the open set's probe on each backend, where it was measured (since stop 55); before
    # the encoder's int8 network shipped, the int8 backend's ran in onnxruntime unquantised
    probe = {
        "torch": ms.get("openset_probe_torch", 0.0),
        "onnx": ms.get("openset_probe_onnx", 0.0),
        "onnx-int8": ms.get("openset_probe_int8", ms.get("openset_probe_onnx", 0.0)),
    }
    for key, x in r["end_to_end"].items():
        code, backend, workers = key.split(" ")
        who = f"previous ({r['baseline'][:12]})" if code == "baseline" else "this code"
        acc = x.get("accuracy")
        # the stages' sum: every stage one after the other on one thread, on every core
        ceiling = (
            r["cores"] * 1000 / (common + ms[network[backend]] + probe[backend])
            if code != "baseline"
            else 0
        )
        rows.append(
            f"| {who}, {backend}, {workers.replace('=', ' ')} | {x['clips_per_s']:.0f} | "
            f"{x['of_decode_limit']:.2f} | "
            + (f"{x['clips_per_s'] / ceiling:.2f} | " if ceiling else "| ")
            + (
                f"{_pct(acc['value'])} ({_interval(*acc['ci95'])}) of {acc['n']:,} |"
                if acc
                else "|"
            )
        )
    lat = r["latency_ms"]
    rows += [
        "",
        f"{st['clips']} clips ({st['audio_seconds'] / st['clips']:.1f} s each on average, "
        f"{st['windows'] / st['clips']:.1f} windows) for the stages; {r['clips']:,} for the "
        f"rest. The stages' sum: the clips/s of this code's stages for that backend run one "
        f"after the other on each of the {r['cores']} cores, with nothing lost to waiting or "
        f"to Python's lock (the previous code's stages were not measured). Median of the runs "
        f"in turn; target: {r['target']['of_decode_limit']}x the "
        f"decode limit on {r['target']['cores']} cores. One 3 s clip at a time (warm, 1 "
        f"thread), median of 100 clips: decode + resample {lat['decode_resample']:.1f} ms, "
        f"identify from the file {lat['identify_torch']:.1f} ms with torch, "
        f"{lat['identify_onnx']:.1f} ms with onnxruntime"
        + (f", {lat['identify_onnx-int8']:.1f} ms int8" if "identify_onnx-int8" in lat else "")
        + f" (target "
        f"{r['target'].get('latency_ms', 5):.0f} ms). Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def scale_table() -> str:
    r = _load("scale")
    t, b = r["training"], r["batch_inference"]
    one, two = t["processes_1"], t["processes_2"]
    for x in (one, two):  # an older run recorded no count: the test split of 2,560 clips
        x.setdefault("test_files", 256)
        x.setdefault("test_file_acc_ci95", _wilson(x["test_file_acc"], x["test_files"]))
    rows = [
        "| what | 1 | 2 | 2 vs 1 |",
        "|---|---:|---:|---:|",
        f"| training, torchrun processes (median epoch) | {one['train_clips_per_s']:,.0f} "
        f"clips/s | {two['train_clips_per_s']:,.0f} clips/s | {t['speedup_2_vs_1']}× |",
        f"| test accuracy (files) | {_pct(one['test_file_acc'])} "
        f"({_interval(*one['test_file_acc_ci95'])}) | {_pct(two['test_file_acc'])} "
        f"({_interval(*two['test_file_acc_ci95'])}) | of {one['test_files']} |",
        f"| batch inference, `--workers` ({b['clips']:,} clips) | "
        f"{b['workers_1']['clips_per_s']:,.0f} clips/s | {b['workers_2']['clips_per_s']:,.0f} "
        f"clips/s | {b['speedup_2_vs_1']}× |",
    ]
    rows += [
        "",
        "| onnxruntime vs torch | threads | torch | onnxruntime | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for o in r["onnx"]:
        rows.append(
            f"| {o['model']}, batch 1 | {o['threads']} | {o['torch']['batch1_ms']:.2f} ms "
            f"| {o['onnxruntime']['batch1_ms']:.2f} ms | {o['latency_speedup']}× faster |"
        )
        rows.append(
            f"| {o['model']}, batch 64 | {o['threads']} | "
            f"{o['torch']['batch64_windows_per_s']:,.0f} windows/s | "
            f"{o['onnxruntime']['batch64_windows_per_s']:,.0f} windows/s | "
            f"{o['throughput_speedup']}× |"
        )
    rows += ["", f"Made by {_made(r)}."]
    return "\n".join(rows)


def synth_table() -> str:
    r = _load("synth")
    rows = [
        "| engine | clips | one worker's engine time | clips/s (one worker) | × real time |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, e in r["per_engine"].items():
        rows.append(
            f"| {name} | {e['clips']:,} | {e['engine_s']:.0f} s | "
            f"{e['clips_per_s_one_worker']:.1f} | {e['real_time_factor']:.0f} |"
        )
    rows += [
        "",
        f"{r['clips']:,} clips ({r['voices']} × {r['sentences']:,} sentences, "
        f"{r['workers']} workers) in {r['wall_s']:.0f} s ({r['clips_per_s']:.1f} clips/s), "
        f"{r['failed']} failed. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def ablation_table() -> str:
    r = _load("ablation-dev")
    variants = r["variants"]
    rows = [
        "| condition | "
        + " | ".join(f"{v['name']} ({v['epochs']} epochs)" for v in variants)
        + " |",
        "|---|" + "---:|" * len(variants),
    ]
    for c in variants[0]["conditions"]:
        cells = [f"{_pct(v['conditions'][c]['accuracy'])}" for v in variants]
        rows.append(f"| `{c}` | " + " | ".join(cells) + " |")
    files = variants[0]["conditions"]["clean"]["files"]
    rows += [
        "",
        f"File-level accuracy on {_held_out(r)}, {files} files per condition (a difference "
        f"of one file is {_pct(1 / files, 2)}). Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def soak_table() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = _load("soak")
    return module.table(result) + ("" if "command" in result else f"\n\nMade by {_made(result)}.")


def classifier_card() -> str:
    """The bundled classifier's figures: the robustness benchmark's default model on the
    test set, under every condition."""
    import hashlib

    rob = _load("robustness")
    default = next(m for m in rob["models"] if m["name"] == "default")
    shipped = hashlib.sha256((CARD.parent / "model.safetensors").read_bytes()).hexdigest()
    rows = ["| condition | accuracy (95 % interval) | files |", "|---|---:|---:|"]
    for name, x in default["conditions"].items():
        rows.append(
            f"| `{name}` | {_pct(x['accuracy'])} ({_interval(*x['ci95'])}) | {x['files']} |"
        )
    measured = default.get("weights_sha256")
    same = (
        "the weights measured are these (SHA-256 recorded in the JSON)"
        if measured == shipped
        else "measured on the run the benchmark trained; this JSON predates recording the "
        "weights' SHA-256"
        if measured is None
        else "**the JSON measured other weights than these: rerun the benchmark**"
    )
    rows += [
        "",
        f"File-level accuracy on {_held_out(rob)}. Weights SHA-256 `{shipped[:16]}…`: {same}. "
        f"Made by {_made(rob)}.",
    ]
    return "\n".join(rows)


def openset_table() -> str:
    """The bundled classifier's open-set answer on test data (benchmarks/openset.py): the
    shipped open set (with torch and with the int8 backend) and, on the same clips, one on
    the classifier's own embedding."""
    r = _load("openset")
    t = r["test"]
    extra = [
        (title, (r.get(key) or {}).get("test"))
        for key, title in (
            ("int8", "the same, `--backend onnx-int8`"),
            ("own_embedding", "the classifier's own embedding"),
        )
    ]
    extra = [(title, x) for title, x in extra if x]
    rows = [
        "| test clips | shipped: the encoder's embedding (95 % interval) |"
        + "".join(f" {title} |" for title, _ in extra)
        + " clips |",
        "|---|---:|" + "---:|" * len(extra) + "---:|",
    ]
    for what, key in (
        ("its own 8 voices: named (not unknown)", "known_kept"),
        ("its own 8 voices: named right", "known_answered_right"),
        ("its own 8 voices, middle 2 s: named", "known_short_kept"),
        (f"{len(t['other_tts_voices'])} other TTS voices: unknown", "other_tts_rejected"),
        ("other TTS voices, middle 2 s: unknown", "other_tts_short_rejected"),
        ("6 people (human-dev digits, ~3 s): unknown", "human_rejected"),
    ):
        x = t.get(key)
        if x is not None:
            others = "".join(
                f" {_rate(y[key])} |" if y.get(key) is not None else " |" for _, y in extra
            )
            units = f" ({x['units']} voices)" if x.get("units") else ""
            rows.append(f"| {what} | {_rate(x)} |{others} {x['n']}{units} |")
    f = r["fitted_on_dev"]
    what = r.get("embedding", "the run's own, mean of the windows")
    own = r.get("own_embedding")
    short = (
        f" ({r['short_threshold']:.3f} for clips of 2 windows or fewer)"
        if r.get("short_threshold") is not None
        else ""
    )
    rows += [
        "",
        f"Threshold {r['threshold']:.3f}{short} on the cosine to the named voice's prototype "
        f"({what}), fitted on dev data ({f['rule']}; {f['known_clips']} known and "
        f"{f['unknown_clips']} other dev clips)"
        + (
            f"; the own-embedding open set was fitted on the same dev clips by the same rule "
            f"(threshold {own['threshold']:.3f})"
            if own
            else ""
        )
        + f". Made by {_made(r)}."
        + (
            " The other voices' and people's intervals count voices, not clips, as the "
            "observations where their clips go together (Wilson at the effective count, "
            "`clustered_proportion`); the 8 voices' count clips (their population is "
            "sentences)."
            if "interval" in t.get("other_tts_rejected", {})
            else ""
        ),
    ]
    return "\n".join(rows)


_NAMING_WAYS = {
    "speech": "each voice's own speech (up to 30 s) embedded again",
    "centroid": "the centre of its window embeddings",
}


def diarize_table() -> str:
    """Diarization (benchmarks/diarize.py): each encoder on each set of test conversations,
    and the human-dev conversations."""
    r = _load("diarize")
    rows = [
        "| conversations | encoder | DER, collar 0.25 s (95 % interval) | DER, no collar | JER | "
        "missed / false alarm / confusion | voices counted right | enrolled speech named "
        "right | strangers named as enrolled | x real time |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    labels = {"clean": "test, clean", "overlap10": "test, 10 % overlap",
              "noise10": "test, noise 10 dB", "room": "test, room"}  # fmt: skip
    for split, sets in (("test", r["test"]), ("human", r["human"])):
        for name, by_encoder in sets.items():
            for enc, f in by_encoder.items():
                parts = f["der_collar_0.25_parts"]
                named = (
                    f"{_pct(f['enrolled_named_right'])} "
                    f"({_interval(*f['enrolled_named_right_ci95'])})"
                    if f.get("enrolled_named_right") is not None
                    else "-"
                )
                strangers = (
                    _rate(f["unknown_voices_named_enrolled"])
                    if "unknown_voices_named_enrolled" in f
                    else "-"
                )
                where = labels.get(name, name) if split == "test" else "human-dev, clean"
                rows.append(
                    f"| {where} ({f['conversations']}) | {enc} | "
                    f"{_pct(f['der_collar_0.25'])} ({_interval(*f['der_collar_0.25_ci95'])}) | "
                    f"{_pct(f['der_collar_0.0'])} | {f['jer']:.3f} | "
                    f"{_pct(parts['missed detection'])} / {_pct(parts['false alarm'])} / "
                    f"{_pct(parts['confusion'])} | {_rate(f['count_exact'])} | {named} | "
                    f"{strangers} | {f['real_time_factor']:.0f} |"
                )
    chosen = ", ".join(
        f"{n}: window {c.get('window_s', 1.5)} s every {c.get('hop_s', 0.75)} s, threshold "
        f"{c['threshold']}, overlap marking {'on' if c['overlap'] else 'off'}, "
        f"smallest cluster {c.get('min_cluster_s', 2.0)} s, small clusters kept beyond "
        f"{c.get('keep_far') or 'never'}"
        + (
            f", small clusters holding a speech region of {c['keep_region_s']['seconds']} s "
            "or more kept"
            if c.get("keep_region_s", {}).get("seconds")
            else ", small clusters not kept for a region they hold"
            if "keep_region_s" in c
            else ""
        )
        + (
            f", small clusters absorbed as an overlap of two others above a cosine of "
            f"{c['mixture_above']['cosine']}"
            if c.get("mixture_above", {}).get("cosine")
            else ", no cluster absorbed as an overlap"
            if "mixture_above" in c
            else ""
        )
        + f", live threshold "
        f"{c['live']['threshold']:.3f}"
        + (f" (turns {c['live']['turn']['threshold']:.3f})" if "turn" in c["live"] else "")
        + (
            f", dev voices counted right {c['dev_count_exact']['k']} of {c['dev_count_exact']['n']}"
            if "dev_count_exact" in c
            else ""
        )
        + (
            (
                f", clusters merged above a speech cosine of {c['merge_speech']['cosine']}"
                if c["merge_speech"]["cosine"]
                else ", clusters not merged by their speech"
            )
            if "merge_speech" in c
            else ""
        )
        + (
            f", naming threshold {c['naming']['threshold']:.3f} (verification "
            f"{c['naming']['verification_threshold']:.3f}"
            + (
                f"; named from {_NAMING_WAYS[c['naming']['way']]}; the other way's threshold "
                f"{c['naming']['other']['threshold']:.3f}"
                if "way" in c["naming"]
                else ""
            )
            + ")"
            if "naming" in c
            else ""
        )
        for n, c in r["chosen"].items()
    )
    rows += [
        "",
        f"Settings chosen on dev conversations ({chosen}); rule: {r['rule']}. Intervals: DER, "
        "a bootstrap over conversations; shares, Wilson. Enrolled speech named right: the "
        "share of enrolled voices' speech under a turn of their own name. Strangers: voices "
        "of a conversation that are not enrolled, counted when a turn label with an enrolled "
        f"name is mostly their speech. "
        + (
            f"Test draw {r['test_draw']}: voices, sentences and conversations drawn fresh "
            "after the earlier draws' figures had been looked at while the settings were "
            "chosen. "
            if r.get("test_draw", 1) > 1
            else "Test draw 1: its figures were looked at while the settings were chosen, so "
            "they are closer to dev than to test. "
        )
        + f"Made by {_made(r)}.",
    ]
    by_shortest = [
        f"{labels.get(name, name)}, {enc}: "
        + "; ".join(
            f"{v['k']} of {v['n']}, {_rate(v)}, where it speaks {k}" for k, v in groups.items()
        )
        for name, by_encoder in r["test"].items()
        for enc, f in by_encoder.items()
        if (groups := f.get("count_exact_by_shortest_voice"))
    ]
    if by_shortest:
        rows += [
            "",
            "Voices counted right, apart by how long the conversation's least heard voice "
            "speaks in all: " + ". ".join(by_shortest) + ".",
        ]
    other = [
        f"{labels.get(name, name)}, {enc} (from {_NAMING_WAYS[c['way']]}): "
        f"{_pct(c['enrolled_named_right'])} ({_interval(*c['enrolled_named_right_ci95'])}) "
        f"named, strangers {c['unknown_voices_named_enrolled']['k']} of "
        f"{c['unknown_voices_named_enrolled']['n']}"
        for name, by_encoder in r["test"].items()
        for enc, f in by_encoder.items()
        if (c := f.get("other_naming"))
    ]
    without = [
        f"{labels.get(name, name) if split == 'test' else 'human-dev, clean'}, {enc}: DER "
        f"{_pct(w['der_collar_0.25'])} "
        f"({_interval(*w['der_collar_0.25_ci95'])}) against {_pct(f['der_collar_0.25'])}, "
        f"counted right {w['count_exact']['k']} of {w['count_exact']['n']} against "
        f"{f['count_exact']['k']}"
        + (
            f", enrolled speech named {_pct(w['enrolled_named_right'])} against "
            f"{_pct(f['enrolled_named_right'])}, strangers named "
            f"{w['unknown_voices_named_enrolled']['k']} against "
            f"{f['unknown_voices_named_enrolled']['k']}"
            if w.get("enrolled_named_right") is not None
            else ""
        )
        for split in ("test", "human")
        for name, by_encoder in r[split].items()
        for enc, f in by_encoder.items()
        if (w := f.get("as_before_stop_51"))
    ]
    if without:
        rows += [
            "",
            "The same windows and settings with no small cluster kept for the speech region "
            "it holds and none absorbed as an overlap (as before stop 51), beside the "
            "table's: " + "; ".join(without) + ".",
        ]
    if other:
        rows += [
            "",
            "The same clusters named the other way (not chosen on dev), at that way's "
            "dev-chosen threshold: enrolled speech named right and strangers named as "
            "enrolled, " + "; ".join(other) + ".",
        ]
    return "\n".join(rows)


def diarize_long_table() -> str:
    """A long recording (benchmarks/diarize_long.py): memory and voices found."""
    r = _load("diarize-long")
    rows = [
        "| recording | audio | peak memory | x real time | voices found (of 4) | turns |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, f in r["runs"].items():
        rows.append(
            f"| {label} | {f['audio_seconds'] / 60:.0f} min | {f['peak_rss_mib']:.0f} MiB | "
            f"{f['real_time_factor']:.0f} | {f['voices_found']} | {f['turns']} |"
        )
    rows += [
        "",
        f"`whichvoice diarize --model {r['model']}` in a child process (peak resident memory of "
        f"the child; the wall time includes starting Python). The long one used "
        f"{r['memory_ratio_long_to_short']:.2f}x the memory for "
        f"{r['audio_ratio_long_to_short']:.1f}x the audio. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def live_table(name: str = "live") -> str:
    """Live mode (benchmarks/live.py): how soon a new speaker is named, strangers named."""
    r = _load(name)
    rows = [
        "| encoder | rule | changes to an enrolled voice | named within 1 s | named before the "
        "turn ends | median delay | wrong answers inside turns | strangers' turns named as "
        "enrolled | strangers' answers named as enrolled | changes to a stranger: an unknown "
        "voice within 1 s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for encoder, x in r["results"].items():
        for rule, f in x["rules"].items():
            delay = "-" if f["median_delay_s"] is None else f"{f['median_delay_s']:.2f} s"
            # measured since stop 57
            unknown = (
                f"{f['strangers_unknown_within_1s']['k']} of {f['stranger_changes']}"
                if "stranger_changes" in f
                else "-"
            )
            rows.append(
                f"| {encoder} | {rule} | {f['changes']} | {_rate(f['named_within_1s'])} | "
                f"{_rate(f['named_in_turn'])} | {delay} | "
                f"{_rate(f['wrong_answers_in_turns'])} | "
                f"{f['stranger_turns_named_enrolled']['k']} of "
                f"{f['stranger_turns_named_enrolled']['n']} | "
                f"{_rate(f['stranger_answers_named_enrolled'])} | {unknown} |"
            )
    where = (
        f"test draw {r['test_draw']}"
        if r["split"] == "test"
        else "dev-pool voices (the rule was chosen here)"
    )
    v = r["voices"]
    by_speech = []
    for encoder, x in r["results"].items():
        pairs = x.get("live_threshold_by_speech")
        if pairs is None:
            continue
        text = ", ".join(f"{low:g} s: {t:.3f}" for low, t in pairs) or "none"
        if "speech_thresholds" in x:
            text += " (adopted)" if x["speech_thresholds"]["adopted"] else " (not adopted)"
        by_speech.append(f"{encoder} {text}")
    rows += [
        "",
        (
            "Window thresholds by seconds of speech (from that much speech up to the next; 0.8 s "
            f"or more: the window threshold): {'; '.join(by_speech)}. "
            if by_speech
            else ""
        )
        + f"{r['conversations']} {r['split']} conversations ({r['audio_seconds'] / 60:.0f} min, "
        f"{where}), {v['enrolled']} voices enrolled and {v['strangers']} strangers, sent in "
        f"0.1 s messages. Rules: "
        + "; ".join(f"{rule}, {text}" for rule, text in r["rules"].items())
        + f". Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def trace_table() -> str:
    """Source tracing (benchmarks/trace.py): the candidates at the chosen open-set score and
    share kept (every encoder and C), the dev figure that chose and the test figures."""
    r = _load("trace")
    rows = [
        "| encoder, open-set score, dev share kept, C | dev: LOEO macro-F1 | unseen voices: "
        "engine accuracy | mp3 / phone / room accuracy | LOEO: mean AUROC | mean FPR95 | "
        "mean macro-F1 with unknown | people named an engine |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    chosen = r["candidates"][r["chosen"]]
    for label, cand in r["candidates"].items():
        if (cand["score"], cand["keep"]) != (chosen["score"], chosen["keep"]):
            continue  # the JSON holds them all: here, the chosen score and share kept
        t = cand["test"]
        u, lo = t["unseen_voices"], t["leave_one_engine_out"]
        degraded = " / ".join(_pct(u[k]["accuracy"]["value"]) for k in ("mp3-24k", "phone", "room"))
        mark = " (chosen)" if label == r["chosen"] else ""
        rows.append(
            f"| {label}{mark} | {cand['dev']['loeo_mean_macro_f1']:.3f} | "
            f"{_rate(u['clean']['accuracy'])} | {degraded} | "
            f"{lo['mean_auroc']:.3f} ({lo['mean_auroc_ci95'][0]:.3f}-"
            f"{lo['mean_auroc_ci95'][1]:.3f}) | {_pct(lo['mean_fpr95'])} "
            f"({_interval(*lo['mean_fpr95_ci95'])}) | {lo['mean_macro_f1']:.3f} "
            f"({lo['mean_macro_f1_ci95'][0]:.3f}-{lo['mean_macro_f1_ci95'][1]:.3f}) | "
            + (_rate(t["human"]["named_an_engine"]) if "human" in t else "")
            + " |"
        )
    chosen_test = r["candidates"][r["chosen"]]["test"]
    u = chosen_test["unseen_voices"]["clean"]
    people = chosen_test.get("human")
    rows += [
        "",
        f"Every encoder and C at the chosen open-set score and share kept (the JSON holds all "
        f"{len(r['candidates'])} candidates). "
        f"Test voices only ({u['clips']} clips of unseen voices of known families; the leave-one-"
        f"engine-out folds use every voice's test-sentence clips). Intervals: accuracy, Wilson; "
        f"the means, a bootstrap over the {len(r['voices'])} families. The rule (when each "
        f"version was written: see the text): {r['rule']}. "
        + (
            f"People: {people['clips']} clips of {people['speakers']} human-dev speakers (6 "
            "spoken digits joined, ~3 s; no head saw people), the share answered with a known "
            "engine rather than unknown (the chosen head named "
            + (", ".join(f"{f} {n}" for f, n in people["engines_named"].items()) or "none")
            + "). "
            if people
            else ""
        )
        + f"Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def trace_folds_table() -> str:
    """The chosen candidate's leave-one-engine-out folds on test clips."""
    r = _load("trace")
    cand = r["candidates"][r["chosen"]]
    seen = set(r["families_the_bundled_encoder_trained_on"])
    rows = [
        "| family left out | its clips | AUROC (95 % interval) | FPR95 | macro-F1 with unknown | "
        "called unknown | known clips kept | encoder saw its voices |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for family, x in cand["test"]["leave_one_engine_out"]["folds"].items():
        base = cand["encoder"].removesuffix("+fingerprint")  # a joined head reads its embedding
        saw = "yes" if family in seen and base in ("whichvoice", "auto") else "no"
        rows.append(
            f"| {family} | {x['unknown_clips']} | {x['auroc']:.3f} ({x['auroc_ci95'][0]:.3f}-"
            f"{x['auroc_ci95'][1]:.3f}) | {_pct(x['fpr95'])} | {x['macro_f1']:.3f} "
            f"({x['macro_f1_ci95'][0]:.3f}-{x['macro_f1_ci95'][1]:.3f}) | "
            f"{_rate(x['called_unknown'])} | {_rate(x['known_kept'])} | {saw} |"
        )
    rows += ["", f"{r['chosen']}: each row a head fitted without that family. Made by {_made(r)}."]
    return "\n".join(rows)


def embed_limits_table() -> str:
    """Verification and diarization embedding against the decode limit
    (benchmarks/embed_limits.py)."""
    r = _load("embed-limits")
    d = r["decode_limit"]
    rows = [
        "| encoder | clips/s | x the decode limit | x real time | measured too (verify, "
        "identify): clips/s | x the decode limit | recordings, x real time | x the decode limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| decode + resample alone ({r['cores']} processes) | {d['clips_per_s']:.0f} | 1.00 | "
        f"| | | {d['recordings_times_real_time']:.0f} | 1.00 |",
    ]
    for name, x in r["results"].items():
        measured = (  # results made before verify measured each clip's quality have none
            f"{x['measured_clips_per_s']:.0f} | {x['measured_clips_of_decode_limit']:.2f}"
            if "measured_clips_per_s" in x
            else "- | -"
        )
        rows.append(
            f"| {name} | {x['clips_per_s']:.0f} | {x['clips_of_decode_limit']:.2f} | "
            f"{x['clips_times_real_time']:.0f} | {measured} | "
            f"{x['recordings_times_real_time']:.0f} | {x['recordings_of_decode_limit']:.2f} |"
        )
    rows += [
        "",
        f"{r['clips']} clips of 3-4 s ({r['clips_audio_seconds'] / 60:.0f} min) embedded with "
        f"`embed_many` (enroll; verify and identify measure each clip too: "
        f"`embed_and_trace(measure=True)`); {r['recordings']} recordings "
        f"({r['recordings_audio_seconds'] / 60:.0f} min) of the same clips joined, diarized as "
        f"far as their window embeddings (clustering not counted). {r['method']}. Target: "
        f"{r['target']['of_decode_limit']}x the decode limit on 2 cores. Made by {_made(r)}.",
    ]
    return "\n".join(rows)


def trace_speakers_table() -> str:
    """What the extra recorded speakers alone change (benchmarks/trace_speakers.py)."""
    r = _load("trace-speakers")
    rows = [
        "| head kind, fitted on | train clips | dev: LOEO macro-F1 | unseen test voices | "
        "earlier test voices | MBROLA test voices | LOEO: mean AUROC | mean FPR95 | mean "
        "macro-F1 with unknown | people named an engine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, x in r["results"].items():
        t = x["test"]
        rows.append(
            f"| {label} | {x['train_clips']} | {x['dev']['loeo_mean_macro_f1']:.3f} | "
            f"{_rate(t['unseen voices']['accuracy'])} | "
            f"{_rate(t['earlier test voices']['accuracy'])} | "
            f"{_rate(t['unseen voices']['accuracy_by_family']['mbrola'])} | "
            f"{t['loeo_mean_auroc']:.3f} | {_pct(t['loeo_mean_fpr95'])} | "
            f"{t['loeo_mean_macro_f1']:.3f} | {_rate(t['people_named_an_engine'])} |"
        )
    rows += [
        "",
        f"Each head fitted on the train voices trace.py had until stop 50 or on every one "
        f"({len(r['added_train_voices'])} more: MBROLA databases and RHVoice's Leticia-F123), "
        "thresholded on the same dev clips; the same test clips (the earlier test voices: "
        f"without the {len(r['added_test_voices'])} added at stop 50). Intervals: Wilson. "
        f"Made by {_made(r)}.",
    ]
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {
    "embed-limits": embed_limits_table,
    "trace": trace_table,
    "trace-speakers": trace_speakers_table,
    "trace-folds": trace_folds_table,
    "openset": openset_table,
    "classifier-card": classifier_card,
    "ablation-dev": ablation_table,
    "train": train_table,
    "serve": serve_table,
    "limits": limits_table,
    "scale": scale_table,
    "synth": synth_table,
    "soak": soak_table,
    "summary": summary_table,
    "conditions": conditions_table,
    "robustness": robustness_table,
    "robustness-dev": lambda: robustness_table("robustness-dev"),
    "robustness-dev-networks": lambda: robustness_table("robustness-dev-networks"),
    "robustness-dev-hop": lambda: robustness_table("robustness-dev-hop"),
    "verify": verify_table,
    "default-bar": default_bar_table,
    "identify-dev": identify_dev_table,
    "strangers": strangers_table,
    "prototypes": prototypes_table,
    "robustness-mixed16": lambda: robustness_table("robustness-mixed16"),
    "mixed16-voices": voices_table,
    "families": families_table,
    "human": human_table,
    "fusion-dev": fusion_table,
    "windows-dev": windows_table,
    "speed": speed_table,
    "snorm-dev": snorm_table,
    "quality-dev": quality_table,
    "quality-measures": quality_measures_table,
    "diarize": diarize_table,
    "live": live_table,
    "live-dev": lambda: live_table("live-dev"),
    "live-dev-streak": lambda: live_table("live-dev-streak"),
    "live-dev-20": lambda: live_table("live-dev-20"),
    "live-draw12": lambda: live_table("live-draw12"),
    "diarize-long": diarize_long_table,
}


def _n(x: float, digits: int = 0) -> str:
    """A share in per cent, without the sign: 0 as ``0``."""
    return "0" if x == 0 else f"{100 * x:.{digits}f}"


def readme_figures() -> list[str]:
    """The figures README.md's prose quotes outside its table blocks (its limitations), each
    as the JSON gives it: a result that changes makes ``--check`` (and tests/test_docs.py)
    name the sentence to rewrite (an audit: prose figures were checked by no one)."""
    out = []
    fr = _load("human")["results"]["auto"]["at_shipped_threshold"]["false_rejection"]
    out.append(f"rejects {_n(fr['value'])} % ({_n(fr['ci95'][0])}-{_n(fr['ci95'][1])} % "
               f"counting {fr['units']} speakers; {fr['n']} clips)")  # fmt: skip
    speed = _load("speed")
    x = {k: f"{v['times_real_time']:.0f}x" for k, v in speed["results"].items()}
    out.append(f"`auto` runs two encoders at {x['auto']} real time on 2 cores, where the "
               f"bundled encoder alone ran at {x['whichvoice']} in the same run "
               f"({speed['clips']} clips;")  # fmt: skip
    out.append(f"`identify`, which also names the engine, {x['auto + engine head']}.")
    ver = _load("verify")
    auto = ver["results"]["auto"]
    at = {c: auto[c]["at_dev_threshold"]["false_rejection"] for c in ver["channels"]}
    low, high = min(r["value"] for r in at.values()), max(r["value"] for r in at.values())
    hard = auto["hard"]["at_dev_threshold"]["false_rejection"]
    human = [r["at_dev_threshold"]["false_rejection"]["value"]
             for r in auto["human-degraded"].values()]  # fmt: skip
    out.append(f"rejects {_n(low)}-{_n(high, 1)} % of genuine TTS clips over the phone, as mp3 "
               f"or in a room, but {_n(hard['value'])} % ({_n(hard['ci95'][0])}-"
               f"{_n(hard['ci95'][1])} %) of short clips in noise, and "
               f"{_n(min(human))}-{_n(max(human))} % of the human-dev speakers' degraded "
               "clips")  # fmt: skip
    strangers = _load("strangers")
    st = strangers["results"]["auto"]
    by_draw = [b["value"] for b in st["by_draw"].values()]
    out.append(f"answers `unknown` for {_pct(st['strangers_rejected']['value'])} "
               f"({_interval(*st['strangers_rejected']['ci95'])}) of strangers' clean clips "
               f"among {strangers['enrolled_per_split']} enrolled voices, over "
               f"{st['voices_with_a_clip_named']['n']} test voices held out from every other "
               "benchmark (target "
               f"{_n(strangers['target']['strangers_rejected'])} %; single draws of "
               f"{strangers['voices_per_draw']} voices gave {_pct(min(by_draw))} to "
               f"{_pct(max(by_draw))}")  # fmt: skip
    short, among = auto["hard"]["false_rejection"], ver["results"]["whichvoice"]["clean"]["voices"]
    out.append(f"({_n(short['value'])} %, {_n(short['ci95'][0])}-{_n(short['ci95'][1])} %, of "
               f"short noisy clips among {among // 2})")  # fmt: skip
    trace = _load("trace")
    test = trace["candidates"][trace["chosen"]]["test"]
    acc = test["unseen_voices"]["clean"]["accuracy"]
    out.append(f"names the right engine family for {_n(acc['value'])} % "
               f"({_n(acc['ci95'][0])}-{_n(acc['ci95'][1])} %, of {acc['n']})")  # fmt: skip
    folds = test["leave_one_engine_out"]["folds"]
    unknown = sum(f["called_unknown"]["value"] for f in folds.values()) / len(folds)
    out.append(f"calls only {_n(unknown)} % of the clips of an engine it never saw unknown "
               f"(the mean of {len(folds)} engines held out in turn;")  # fmt: skip
    diar = _load("diarize")
    test = {c: x["auto"] for c, x in diar["test"].items()}
    clean, rest = test["clean"], [x for c, x in test.items() if c != "clean"]
    der = clean["der_collar_0.25"], *clean["der_collar_0.25_ci95"]
    count = clean["count_exact"]
    miscount = [1 - x["count_exact"]["value"] for x in rest]
    named = [x["enrolled_named_right"] for x in rest]
    wrong = [x["unknown_voices_named_enrolled"] for x in test.values()]
    speed = [x["real_time_factor"] for x in test.values()]
    out.append(f"it misattributes {_pct(der[0])} ({_interval(*der[1:])}) of the speech time")
    out.append(f"miscounts the voices in {count['n'] - count['k']} of {count['n']} "
               f"({_n(min(miscount))}-{_n(max(miscount))} % with overlap, in noise or a room), "
               f"names {_n(clean['enrolled_named_right'])} % "
               f"({_interval(*clean['enrolled_named_right_ci95'], 0)}) of enrolled voices' "
               f"speech ({_n(min(named))}-{_n(max(named))} % with overlap, in noise or a "
               f"room) and gave an enrolled name to {sum(w['k'] for w in wrong)} of "
               f"{sum(w['n'] for w in wrong)} appearances of "
               f"{len(set(diar['voices']['test']) - set(diar['voices']['enrolled']))} "
               f"strangers (none of the clean set's {clean['unknown_voices_named_enrolled']['n']})"
               if clean["unknown_voices_named_enrolled"]["k"] == 0 else "(some of the clean "
               "set's strangers named: rewrite the sentence)")  # fmt: skip
    out.append(f"runs at {10 * math.floor(min(speed) / 10)}-{10 * math.ceil(max(speed) / 10)}x "
               "real time on 2 cores")  # fmt: skip
    live = _load("live")["results"]["auto"]["rules"]["shipped"]
    within, wrong_in = live["named_within_1s"], live["wrong_answers_in_turns"]
    strangers_named = live["stranger_turns_named_enrolled"]
    out.append(f"follows a live change of speaker within 1 s in {_n(within['value'])} % "
               f"({_interval(*within['ci95'], 0)}) of {within['n']} test changes")  # fmt: skip
    out.append(f"{strangers_named['k']} of {strangers_named['n']} strangers' turns given an "
               f"enrolled name, {_pct(wrong_in['value'])} of answers inside enrolled turns "
               "wrong")  # fmt: skip
    return out


def stale_readme_figures() -> list[str]:
    """``readme_figures`` that README.md does not say (white space aside); a result without
    what a figure is made from (not measured, or measured without an encoder the sentence
    names) is one line saying so, not a traceback."""
    said = " ".join((ROOT / "README.md").read_text().split())
    try:
        figures = readme_figures()
    except (FileNotFoundError, KeyError, IndexError, TypeError, ValueError) as e:
        return [f"a figure README.md quotes is not in the results ({type(e).__name__}: {e})"]
    return [f for f in figures if " ".join(f.split()) not in said]


def render(text: str) -> str:
    def block(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; valid: {', '.join(TABLES)}")
        try:
            table = TABLES[name]()
        except FileNotFoundError as e:  # not measured yet
            script = Path(e.filename).stem.split("-")[0]
            table = (
                f"_Not measured yet: `python benchmarks/{script}.py` writes "
                f"`benchmarks/results/{Path(e.filename).name}`._"
            )
        return f"{m.group(1)}{table}\n{m.group(4)}"

    return BLOCK.sub(block, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a table is out of date")
    args = parser.parse_args()
    stale = []
    for path in DOCS:
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        sys.exit(
            f"tables out of date in {', '.join(map(str, stale))}: run python benchmarks/tables.py"
        )
    prose = stale_readme_figures()
    if prose:  # prose is written by hand: said, not rewritten
        sys.exit("README.md's prose does not say, as the JSON now has it: " + " | ".join(prose))
    print("up to date" if not stale else f"rewrote {', '.join(map(str, stale))}")


if __name__ == "__main__":
    main()
