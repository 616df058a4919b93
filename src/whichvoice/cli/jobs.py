"""Commands that run a whole job: demo (the main job) and recipe encoder."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from whichvoice.cli.common import (
    FiniteRange,
    LocalOutput,
    app,
    feature_config,
    model_choice,
    print_table,
    setup_train_logging,
)
from whichvoice.cli.corpus import synthesize
from whichvoice.text import counted


@app.command("demo")
@click.option("--model", type=model_choice(), default="voicenet", show_default=True)
@click.option(
    "--features",
    type=click.Choice(["logmel", "seed-image"]),
    default=None,
    help="[default: the model's own]",
)
@click.option(
    "--sentences",
    type=click.IntRange(min=10),
    default=320,
    show_default=True,
    help="Bundled sentences, each read by every voice of --voices.",
)
@click.option(
    "--voices",
    default="default8",
    show_default=True,
    help="The voices to tell apart: a set (default8; mixed16 after `make voices`) or ids.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="[default: the model's own]"
)
@click.option(
    "--out", type=LocalOutput(path_type=Path), default=Path("runs/demo"), show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress, steps or table: the result line only."
)
def demo_cmd(
    model: str,
    features: str | None,
    sentences: int,
    voices: str,
    epochs: int | None,
    out: Path,
    seed: int,
    quiet: bool,
) -> None:
    """The main job: synthesize default8 (or --voices), train, evaluate, print the per-voice
    table.

    `whichvoice demo --model talk-cnn --features seed-image` reproduces the talk.
    """
    setup_train_logging(quiet)
    from whichvoice.evaluate import evaluate
    from whichvoice.train import TrainConfig, train

    corpus = out / "corpus"
    run = out / f"run-{model}-{features or 'default'}"
    from whichvoice.files import check_creatable

    check_creatable(out, "demo's folder")  # before the first step's line (a CLI review)
    if not quiet:
        click.echo(f"[1/3] synthesizing {sentences} sentences x {voices} -> {corpus}")
    synthesize(corpus, voices, str(sentences), "all", "mp3", None, seed, quiet, "standard", 300)
    if not quiet:
        click.echo(f"[2/3] training {model} -> {run}")
    train(
        corpus,
        run,
        TrainConfig(model=model, epochs=epochs, seed=seed),
        features=feature_config(features, model, None),
        progress=not quiet,
    )
    if not quiet:
        click.echo("[3/3] evaluating on the held-out test sentences")
    metrics = evaluate(run, corpus=corpus, report_dir=run, progress=not quiet)  # its own report
    if not quiet:  # --quiet drops the steps and the table, never the result
        print_table(metrics)
    lo, hi = metrics.get("file_accuracy_ci95", (float("nan"), float("nan")))
    click.echo(
        f"test accuracy {metrics['file_accuracy']:.4f} [95 % interval {lo:.4f}, {hi:.4f}] on "
        f"{counted(metrics['files'], 'file')}; report: {metrics['report']}"
    )


@app.group("recipe")
def recipe_group() -> None:
    """Reproducible recipes (corpus, training, calibration in one command)."""


@recipe_group.command("encoder")
@click.option("--out", type=LocalOutput(path_type=Path), required=True, help="Work folder.")
@click.option("--per-voice", type=click.IntRange(min=4), default=20, show_default=True)
@click.option(
    "--random-voices",
    type=click.IntRange(min=0, max=100_000),
    default=0,
    show_default=True,
    help="Random espeak-ng variants (random formants, pitch, voice source) trained on as more "
    "voices.",
)
@click.option(
    "--recorded-per-voice",
    type=click.IntRange(min=4),
    default=80,
    show_default=True,
    help="Sentences for each recorded (flite/festival) voice.",
)
@click.option(
    "--held-out-per-voice",
    type=click.IntRange(min=5),
    default=30,
    show_default=True,
    help="Sentences for each held-out voice (the calibration trials).",
)
@click.option(
    "--model",
    type=click.Choice(["voicenet-aam", "voicenet-aam-wide", "voicenet-aam-wide-x2"]),
    default="voicenet-aam-wide",
    show_default=True,
    help="The embedding network to train.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--cmn/--no-cmn",
    default=True,
    show_default=True,
    help="Remove each mel band's mean over a window (see `train --cmn`).",
)
@click.option(
    "--tune-epochs",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Then fine-tune this many epochs (0: no fine-tuning).",
)
@click.option(
    "--tune-lr",
    type=FiniteRange(min=0, min_open=True),
    default=3e-4,
    show_default=True,
    help="The fine-tuning's initial learning rate (cosine decay).",
)
@click.option(
    "--tune-cmn/--tune-no-cmn",
    default=False,
    show_default=True,
    help="Whether the fine-tuning removes each mel band's mean (training does, by --cmn).",
)
@click.option(
    "--target-far",
    type=FiniteRange(0, 1),
    default=0.001,
    show_default=True,
    help="Set the threshold for this false-acceptance rate on the held-out trials.",
)
@click.option(
    "--max-variants",
    type=click.IntRange(min=2),
    default=None,
    help="Use only this many espeak-ng variants (a quick, smaller run).",
)
@click.option(
    "--engine-voices/--no-engine-voices",
    default=True,
    show_default=True,
    help="Also train on the training voices of MBROLA, RHVoice and festival's British "
    "diphones (`make voices`); their test voices stay held out.",
)
@click.option(
    "--init",
    default=None,
    help="Fine-tune from this encoder run (`bundled`: the bundled encoder) instead of "
    "training from scratch: only the fine-tuning stage runs.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def recipe_encoder_cmd(
    out: Path,
    per_voice: int,
    random_voices: int,
    recorded_per_voice: int,
    held_out_per_voice: int,
    model: str,
    epochs: int,
    cmn: bool,
    tune_epochs: int,
    tune_lr: float,
    tune_cmn: bool,
    target_far: float,
    max_variants: int | None,
    engine_voices: bool,
    init: str | None,
    seed: int,
    quiet: bool,
) -> None:
    """Make a voice encoder: many-voice corpus, margin training, calibration on held-out voices."""
    setup_train_logging(quiet)
    if not quiet:
        logging.getLogger("whichvoice.recipe").setLevel(logging.INFO)
        logging.getLogger("whichvoice.recipe").addHandler(logging.StreamHandler(sys.stdout))
        logging.getLogger("whichvoice.recipe").propagate = False
    from whichvoice.protocol import ENGINE_VOICES
    from whichvoice.recipe import EncoderRecipe, encoder_recipe
    from whichvoice.verification import bundled_encoder

    cfg = EncoderRecipe(
        per_voice=per_voice,
        random_voices=random_voices,
        recorded_per_voice=recorded_per_voice,
        held_out_per_voice=held_out_per_voice,
        model=model,
        epochs=epochs,
        cmn=cmn,
        tune_epochs=tune_epochs,
        tune_lr=tune_lr,
        tune_cmn=tune_cmn,
        target_far=target_far,
        seed=seed,
        max_variants=max_variants,
        engine_voices=ENGINE_VOICES["train"] if engine_voices else (),
        init=str(bundled_encoder()) if init == "bundled" else init,
    )
    run = encoder_recipe(out, cfg, progress=not quiet)
    if not quiet:
        click.echo(f"encoder: {run} (calibration in {run / 'calibration.json'})")
