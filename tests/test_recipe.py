"""The encoder recipe's choices made before any synthesis or training (whichvoice.recipe): which
voices are trained on and held out, and which split a clip falls in."""

from __future__ import annotations

import functools

import pytest

from whichvoice import recipe
from whichvoice.dataset import PrepareConfig
from whichvoice.recipe import EncoderRecipe, recipe_voices


def test_two_variants_train_on_one_and_hold_out_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--max-variants 2` held both variants out and trained on no espeak-ng variant at
    all (at least one is trained on, whatever the held-out share asks)."""
    # the same voices, listed once: resolving "espeak-all" takes about a second each time
    monkeypatch.setattr(recipe, "resolve_voices", functools.cache(recipe.resolve_voices))
    trained, held = recipe_voices(EncoderRecipe(max_variants=2, engine_voices=()))

    def variants_of(ids: list[str]) -> set[str]:
        return {v.split("+", 1)[1] for v in ids if v.startswith("espeak-ng:") and "+" in v}

    trained_variants, held_variants = variants_of(trained), variants_of(held)
    assert len(held_variants) == 1 and len(trained_variants) == 1
    assert not trained_variants & held_variants


def test_a_clip_drawn_on_a_split_boundary_falls_in_the_split_above_it() -> None:
    """Splits are half-open ranges of the draw in [0, 1): val [0, v), test [v, v + t),
    train the rest; a draw on a boundary went to the split below it."""
    prep = PrepareConfig(val_fraction=0.25, test_fraction=0.25)
    assert [recipe._split_of(r, prep) for r in (0.0, 0.24, 0.25, 0.49, 0.5, 0.99)] == [
        "val", "val", "test", "test", "train", "train",
    ]  # fmt: skip
