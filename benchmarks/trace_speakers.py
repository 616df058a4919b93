"""Source tracing: what stop 50's extra recorded speakers (``make bench-voices``) alone change.

On the corpora and cached embeddings of a ``benchmarks/trace.py`` run (same ``--workdir``; run
trace.py first), heads of two kinds, the one shipped until stop 49 (resemblyzer + fingerprint,
energy, keep 95 %, C 1, no prosody variants) and the one trace.py chose at stop 50 (C 0.01,
keep 99 %, with prosody variants), each fitted twice: on the train voices trace.py had until
stop 49 and on all of today's, both thresholded on the same dev clips. Dev figures (the
adoption rule of stop 50 read the dev leave-one-engine-out macro-F1) and test figures (the
unseen voices, all and those of before stop 50; leave one engine out; people), one run, the
same clips. Writes benchmarks/results/trace-speakers.json.

    python benchmarks/trace_speakers.py --workdir DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from human import joined_clips
from provenance import RESULTS, provenance, write_result

from whichvoice.protocol import pool_sentences
from whichvoice.sentences import bundled_sentences
from whichvoice.verification import load_encoder, model_id

_spec = importlib.util.spec_from_file_location("trace_bench", Path(__file__).with_name("trace.py"))
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)

KINDS = {  # label: (encoder, score, keep, C, prosody variants)
    "shipped until stop 49": ("resemblyzer+fingerprint", "energy", 0.95, 1.0, False),
    "shipped since stop 50": ("resemblyzer+fingerprint", "energy", 0.99, 0.01, True),
}


def _base(voice: str) -> str:
    """A prosody variant's voice (``engine:name+pNrM``) -> its voice."""
    return voice.split("+p")[0] if "+p" in voice else voice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="trace.py's --workdir")
    parser.add_argument("--json", type=Path, default=RESULTS / "trace-speakers.json")
    args = parser.parse_args()
    made = provenance(("scikit-learn",))
    work = args.workdir
    voices = T.family_voices((16, 8, 16))
    everyone = [v for t in voices.values() for part in t for v in part]
    train_voices = [v for t in voices.values() for v in t[0]]
    dev_voices = [v for t in voices.values() for v in t[1]]
    test_voices = [v for t in voices.values() for v in t[2]]
    added = {f"mbrola:{n}" for n in T.MBROLA_MORE["train"]} | {"rhvoice:Leticia-F123"}
    earlier_train = {v for v in train_voices if v not in added}
    # the clips as trace.py makes them (its corpora are resumable: nothing is made again)
    clips = {
        "train": T.synthesize(work / "train", train_voices, bundled_sentences(), 24),
        "dev": T.synthesize(work / "dev", everyone, pool_sentences("dev", 200), 10),
        "test": T.synthesize(work / "test", everyone, pool_sentences("test", 200), 10),
    }
    variants = T.prosody_variants(train_voices)
    clips["train-var"] = T.synthesize(work / "train-var", variants, bundled_sentences(), 12)
    has_dev = {c[1] for c in clips["dev"] if c[2] in set(dev_voices)}
    clips["dev"] = [
        c for c in clips["dev"]
        if c[2] in set(dev_voices) or (c[2] in set(train_voices) and c[1] not in has_dev)
    ]  # fmt: skip
    human = joined_clips(work / "human", T.HUMAN_CLIPS, 6)
    clips["human"] = [(p, "human", v) for v, ps in sorted(human.items()) for p in ps]
    clips["train-aug"] = clips["train"]
    clips["train-var-aug"] = clips["train-var"]
    encoder = load_encoder("resemblyzer")
    emb = {
        "resemblyzer": {
            split: T.cached_embeddings(work, "resemblyzer", encoder, model_id(encoder), split, rows)
            for split, rows in clips.items()
        }
    }
    fps = {split: T.cached_fingerprints(work, split, rows) for split, rows in clips.items()}

    def sets_of(train_kept: set[str]):
        kept_clips, kept_emb, kept_fp = {}, {"resemblyzer": {}}, {}
        for split, rows in clips.items():
            idx = [i for i, r in enumerate(rows)
                   if not split.startswith("train") or _base(r[2]) in train_kept]  # fmt: skip
            kept_clips[split] = [rows[i] for i in idx]
            kept_emb["resemblyzer"][split] = emb["resemblyzer"][split][idx]
            kept_fp[split] = fps[split][idx]
        return T.Sets(kept_clips, kept_emb, kept_fp)

    families = sorted(voices)
    results = {}
    for label, (enc, kind, keep, c, with_variants) in KINDS.items():
        for trained, sets in (("the earlier train voices", sets_of(earlier_train)),
                              ("every train voice", sets_of(set(train_voices)))):  # fmt: skip
            head = T.fit(sets, enc, kind, keep, c, variants=with_variants)
            dev_folds = {f: T.loeo_fold(sets, enc, kind, keep, c, f, "dev", with_variants)
                         for f in families}  # fmt: skip
            fam, voi = sets.labels("dev")
            e, fp = sets.inputs(enc, None, "dev")
            rows = [i for i, v in enumerate(voi) if v in set(dev_voices)]
            dev_unseen = T.closed_figures(head, e[rows], [fam[i] for i in rows], fp[rows],
                                          by_family=True)  # fmt: skip
            fam, voi = sets.labels("test")
            e, fp = sets.inputs(enc, None, "test")
            test = {}
            earlier = set(test_voices) - T.ADDED_TEST
            for tag, wanted in (("unseen voices", set(test_voices)),
                                ("earlier test voices", earlier)):  # fmt: skip
                rows = [i for i, v in enumerate(voi) if v in wanted]
                test[tag] = T.closed_figures(head, e[rows], [fam[i] for i in rows], fp[rows],
                                             by_family=True)  # fmt: skip
            folds = {f: T.loeo_fold(sets, enc, kind, keep, c, f, "test", with_variants)
                     for f in families}  # fmt: skip
            named = T.answers(head, *sets.inputs(enc, None, "human"))
            results[f"{label}, fitted on {trained}"] = {
                "train_clips": len(sets.clips["train"]) + len(sets.clips["train-var"]),
                "dev": {
                    "loeo_mean_macro_f1": float(
                        np.mean([x["macro_f1"] for x in dev_folds.values()])
                    ),
                    "loeo_mean_auroc": float(np.mean([x["auroc"] for x in dev_folds.values()])),
                    "unseen_voices": dev_unseen["accuracy"],
                    "unseen_by_family": dev_unseen["accuracy_by_family"],
                },
                "test": {
                    **test,
                    **{
                        f"loeo_mean_{k}": float(np.mean([x[k] for x in folds.values()]))
                        for k in ("auroc", "fpr95", "macro_f1")
                    },
                    "people_named_an_engine": T.proportion(
                        sum(a != T.UNKNOWN for a in named), len(named)
                    ),
                },
            }
            dev_f1 = results[f"{label}, fitted on {trained}"]["dev"]["loeo_mean_macro_f1"]
            print(f"{label}, {trained}: dev LOEO macro-F1 {dev_f1:.4f}", flush=True)
    write_result(args.json, {
        "benchmark": "trace_speakers",
        **made,
        "command": "python benchmarks/trace_speakers.py " + " ".join(sys.argv[1:]),
        "added_train_voices": sorted(added),
        "added_test_voices": sorted(T.ADDED_TEST),
        "results": results,
    })  # fmt: skip
    print(f"-> {args.json}")


if __name__ == "__main__":
    main()
