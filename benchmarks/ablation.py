"""Which augmentation the default model trains with: variants side by side, scored on the
*development* sentences only (the choice is made there; the test sentences are reported by
robustness.py). Writes benchmarks/results/ablation-dev.json.

Variants: the parts before issue 17 (noise, gain, telephone, reverb, mp3), those plus clipping
and speed changes (the default), and the default plus random band limits; each trained the
default number of epochs on ``default8`` x N sentences.

    python benchmarks/ablation.py [--sentences 400] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from provenance import RESULTS, provenance, write_result

from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.evaluate import evaluate
from whichvoice.sentences import load_sentences
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
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=RESULTS / "ablation-dev.json")
    args = parser.parse_args()
    made = provenance()
    work = args.work or Path(tempfile.mkdtemp(prefix="whichvoice-ablation-"))
    corpus = work / "corpus"
    synthesize_corpus(
        corpus,
        load_sentences(args.sentences).sentences,
        SynthConfig(voices=("default8",), assign="all"),
        progress=False,
    )
    variants = []
    for name, augment in VARIANTS.items():
        out = work / name
        if not (out / "metrics.json").is_file():
            train(corpus, out, TrainConfig(model="voicenet", augment=augment), progress=False)
        m = evaluate(out, corpus=corpus, split="val", conditions=CONDITIONS, progress=False)
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
        "split": "val",
        "corpus": {"voices": "default8", "sentences": args.sentences, "assign": "all"},
        "variants": variants,
    })  # fmt: skip


if __name__ == "__main__":
    main()
