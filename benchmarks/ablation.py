"""Which augmentation the default model trains with: variants side by side, scored on the
*dev* set only (``default8`` x dev-pool sentences, ``benchmarks/heldout.py``: the choice is
made there; robustness.py reports the test set). Writes benchmarks/results/ablation-dev.json.

Variants: the parts before issue 17 (noise, gain, telephone, reverb, mp3), those plus clipping
and speed changes (the default), and the default plus random band limits; each trained the
default number of epochs on ``default8`` x N bundled sentences.

    python benchmarks/ablation.py [--sentences 400] [--pool-sentences 100] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from heldout import leakage, pool_set, train_corpus
from provenance import RESULTS, provenance, write_result

from whichvoice.evaluate import evaluate
from whichvoice.train import TrainConfig, train

VARIANTS = {
    "old-parts": "noise,gain,telephone,reverb,mp3",
    "default": "default",
    "default+band": "noise,gain,telephone,reverb,mp3,clip,speed,band",
}
CONDITIONS = [
    "clean", "clipping", "room", "mp3-16k", "speed-10", "speed+10", "babble10", "noise0",
    "short1s", "level-ride", "band", "phone",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--pool-sentences", type=int, default=100, help="dev sentences")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=RESULTS / "ablation-dev.json")
    args = parser.parse_args()
    made = provenance()
    work = args.work or Path(tempfile.mkdtemp(prefix="whichvoice-ablation-"))
    corpus = train_corpus(work, args.sentences, quiet=True)
    labels = pool_set(work, "dev", args.pool_sentences, quiet=True)
    overlaps = leakage(corpus, labels)
    if any(n for pair in overlaps.values() for n in pair.values()):
        sys.exit(f"the dev set overlaps training: {overlaps}")
    variants = []
    for name, augment in VARIANTS.items():
        out = work / name
        if not (out / "metrics.json").is_file():
            train(corpus, out, TrainConfig(model="voicenet", augment=augment), progress=False)
        m = evaluate(
            out, labels_csv=labels, conditions=CONDITIONS, report_dir=out / "dev", progress=False
        )
        variants.append({
            "name": name,
            "augment": augment,
            "epochs": json.loads((out / "metrics.json").read_text())["epochs_run"],
            "conditions": {
                k: {key: v[key] for key in ("files", "correct", "accuracy", "ci95")}
                for k, v in m["conditions"].items()
            },
        })  # fmt: skip
        print(name, {k: round(v["accuracy"], 4) for k, v in m["conditions"].items()}, flush=True)
    write_result(args.json, {
        "benchmark": "ablation",
        **made,
        "command": "python benchmarks/ablation.py " + " ".join(sys.argv[1:]),
        "split": "dev",
        "corpus": {"voices": "default8", "sentences": args.sentences, "assign": "all"},
        "held_out": {"voices": "default8", "pool": "dev", "sentences": args.pool_sentences},
        "leakage": overlaps,
        "variants": variants,
    })  # fmt: skip


if __name__ == "__main__":
    main()
