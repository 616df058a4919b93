"""The bundled classifier's open-set answer, on test data only: the share of its own voices'
test clips it keeps (names), and the share of other voices' clips it answers "unknown":
other TTS voices (``protocol.OTHER_VOICES["test"]`` and test-pool random variants) and real
people (the human-dev recordings, digits joined into ~3 s clips; small and all male: an
illustration, not a human-speech benchmark); each also on the middle 2 s of the same clips
(a phrase: the short threshold). The threshold was fitted on dev data
(``benchmarks/classifier.py``). Beside the shipped open set, on the same clips in the same
run: the open set on the classifier's own embedding (how every open set was made before stop
55), fitted on the same dev clips by the same rule. Writes benchmarks/results/openset.json.

    python benchmarks/openset.py [--work DIR] [--sentences 100] [--other-sentences 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from heldout import pool_set
from provenance import RESULTS, provenance, write_result

from whichvoice.corpus import SynthConfig, synthesize_corpus
from whichvoice.evaluate import labelled_files
from whichvoice.openset import fit_openset
from whichvoice.protocol import OTHER_VOICES, pool_sentences, pool_voices
from whichvoice.runtime import bundled_classifier, load_model
from whichvoice.scoring import clustered_share, proportion

HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "human-dev" / "recordings"
DIGITS_PER_CLIP = 6  # spoken digits joined into one clip (~3 s)
INTERVAL = (
    "Wilson at the effective count: clips / design effect, the voices (speakers) as clusters "
    "(Kish; 1 + (clips per voice - 1) x intraclass correlation); where every clip of every "
    "voice went one way, each voice counts once. ci95_clips: were the clips independent"
)


def other_voices(work: Path, pool: str, sentences: int, quiet: bool) -> list[tuple[Path, str]]:
    """Clips of voices outside default8 for ``pool``, as (path, voice): the named other voices
    and 8 random variants of the pool, each reading ``sentences`` sentences of the pool."""
    corpus = work / f"{pool}-other"
    synthesize_corpus(
        corpus,
        pool_sentences(pool, sentences),
        SynthConfig(voices=(",".join([*OTHER_VOICES[pool], *pool_voices(pool, 8)]),), assign="all"),
        progress=not quiet,
    )
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    return [(corpus / r["path"], r["voice"]) for r in rows]


def human_clips(work: Path, per_speaker: int = 10) -> list[tuple[Path, str]]:
    """``per_speaker`` clips per human-dev speaker, as (path, speaker): ``DIGITS_PER_CLIP``
    takes of distinct digits joined with 0.2 s pauses (``human.joined_clips``, as the other
    benchmarks make people's clips; one take is ~0.5 s: too short alone). Until stop 65 each
    clip was six takes of one digit (the first files in sorted order: 0 and 1)."""
    from human import joined_clips

    clips = joined_clips(work / "human-joined", per_speaker, DIGITS_PER_CLIP, seed=0)
    return [(path, who.removeprefix("human:")) for who, paths in clips.items() for path in paths]


def rejected(model, clips: list[tuple]) -> dict:
    """The share of ``clips`` ((source, voice)) answered "unknown", its interval with the
    voices as clusters (one voice's clips go right or wrong together: the population is
    voices, not clips)."""
    answers = model.identify_many([source for source, _ in clips])
    read = [(p, voice) for (_, voice), p in zip(clips, answers, strict=True)
            if not isinstance(p, Exception)]  # fmt: skip
    result = clustered_share([p.known is False for p, _ in read], [voice for _, voice in read])
    result["interval"] = INTERVAL
    return result


def kept(model, known: list) -> tuple[dict, dict]:
    """(the share of ``known`` (labelled files, or (source, voice)) named, the share named
    right)."""
    sources = [f[0] if isinstance(f, tuple) else f.path for f in known]
    voices = [f[1] if isinstance(f, tuple) else f.voice for f in known]
    answers = list(model.identify_many(sources))
    good = [(p, v) for p, v in zip(answers, voices, strict=True) if not isinstance(p, Exception)]
    return (
        proportion(sum(p.known is True for p, _ in good), len(known)),
        proportion(sum(p.answer == v for p, v in good), len(known)),
    )


def figures(model, known: list, others: list, people: list | None) -> dict:
    """The test figures of one open set: whole clips and their middle 2 s."""
    from whichvoice.openset import SHORT_S, _middle

    named, right = kept(model, known)
    short = [(_middle(f.path, SHORT_S), f.voice) for f in known]
    short_named, _ = kept(model, short)
    return {
        "known_kept": named,
        "known_answered_right": right,
        "known_short_kept": short_named,
        "other_tts_rejected": rejected(model, others),
        "other_tts_short_rejected": rejected(model, [(_middle(p, SHORT_S), v) for p, v in others]),
        "human_rejected": rejected(model, people) if people else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--sentences", type=int, default=100, help="test sentences, default8")
    parser.add_argument("--other-sentences", type=int, default=10, help="per other voice")
    parser.add_argument("--json", type=Path, default=RESULTS / "openset.json")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    made = provenance()
    work = args.work or Path(tempfile.mkdtemp(prefix="whichvoice-openset-"))
    model = load_model(bundled_classifier())
    if model.openset is None:
        sys.exit("the bundled classifier has no openset.json: run benchmarks/classifier.py")
    known = labelled_files(pool_set(work, "test", args.sentences, args.quiet), model.labels)
    others = other_voices(work, "test", args.other_sentences, args.quiet)
    people = human_clips(work) if HUMAN.is_dir() else None
    model8 = load_model(bundled_classifier(), backend="onnx-int8").ready()
    # the same rule on the classifier's own embedding, fitted on the same dev clips
    own = load_model(bundled_classifier())
    dev_set = pool_set(work, "dev", args.sentences, args.quiet)
    dev_known = [(f.path, f.voice) for f in labelled_files(dev_set, own.labels)]
    dev_other = [p for p, _ in other_voices(work, "dev", args.other_sentences, args.quiet)]
    own.openset = fit_openset(own, dev_known, dev_other)  # keep: the default, as shipped
    result = {
        "benchmark": "openset",
        **made,
        "command": "python benchmarks/openset.py " + " ".join(sys.argv[1:]),
        "embedding": model.openset.to_dict()["embedding"],
        "encoder": model.openset.encoder,
        "threshold": model.openset.threshold,
        "short_threshold": model.openset.short_threshold,
        "fitted_on_dev": model.openset.fitted,
        "test": {
            **figures(model, known, others, people),
            "other_tts_voices": [*OTHER_VOICES["test"], *pool_voices("test", 8)],
        },
        "int8": {
            "what": "the shipped open set with --backend onnx-int8: the classifier's and the "
            "encoder's networks quantised to int8 (the thresholds fitted with torch's)",
            "test": figures(model8, known, others, people),
        },
        "own_embedding": {
            "what": "the open set on the classifier's own embedding (the mean of its windows'), "
            "fitted on the same dev clips by the same rule, scored on the same test clips",
            "threshold": own.openset.threshold,
            "short_threshold": own.openset.short_threshold,
            "fitted_on_dev": own.openset.fitted,
            "test": figures(own, known, others, people),
        },
    }
    write_result(args.json, result)
    print(json.dumps(result["test"], indent=2))


if __name__ == "__main__":
    main()
