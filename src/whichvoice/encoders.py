"""Which encoder: the bundled one, a trained run, a pretrained one (``resemblyzer``,
``dvector``) or a fusion of them (``auto``, the default); what a gallery records for it; and
where its calibration (threshold and score-to-probability) is read from and written to."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np

from whichvoice import gallery as gallery_module
from whichvoice.errors import SetupError, WhichvoiceError
from whichvoice.fusion import AUTO, EARLIER, EarlierFusion, FusedEncoder, Fusion, reweighed
from whichvoice.gallery import Gallery, GalleryError, GalleryModelError
from whichvoice.pretrained import (
    DvectorEncoder,
    EncoderUnavailableError,
    PretrainedEncoder,
    ResemblyzerEncoder,
    shipped_dir,
    user_dir,
)
from whichvoice.runtime import ModelLoadError, VoiceModel, load_model
from whichvoice.runtime.load import bundled_encoder_dir, check_run_path, encoder_identity
from whichvoice.runtime.model import guard_forks
from whichvoice.scoring import Calibration

CALIBRATION = "calibration.json"
FUSION = "fusion.json"
BUNDLED_DIR_ENV = "WHICHVOICE_ENCODER_DIR"  # where calibrating the bundled encoder writes
# encoders that ship outside whichvoice (optional extras), by the name --model takes
PRETRAINED = {"resemblyzer": ResemblyzerEncoder, "dvector": DvectorEncoder}
BUNDLED = "whichvoice"  # the bundled encoder's name as a part of a fusion
BUNDLED_NAMES = ("bundled", BUNDLED)  # what --model takes for the bundled encoder

log = logging.getLogger(__name__)

Encoder = VoiceModel | PretrainedEncoder | FusedEncoder


def load_calibration(run: str | os.PathLike) -> tuple[float, Calibration] | None:
    """(threshold, score calibration) a run's ``calibration.json`` holds (written by
    ``whichvoice calibrate``); None when it has none; WhichvoiceError, one line, when it
    cannot be used."""
    read = _read_calibration(Path(run) / CALIBRATION)
    return None if read is None else read[:2]


def _read_calibration(path: Path) -> tuple[float, Calibration, dict] | None:
    """``load_calibration``'s answer and the whole file, read once."""
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        threshold = float(d["threshold"])
        calibration = Calibration.from_dict(d["calibration"])
        if not math.isfinite(threshold) or not all(
            math.isfinite(x) for x in (calibration.a, calibration.b)
        ):
            raise ValueError("a number that is not finite")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        why = f"no {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] or type(e).__name__
        raise SetupError(
            f"{path}: not a usable calibration ({why}); run `whichvoice calibrate` again, or "
            "remove it to use the shipped one",
            public="the encoder's calibration on the server cannot be read (its log says why)",
        ) from e
    return threshold, calibration, d


def model_for(run: str | os.PathLike) -> VoiceModel:
    """The trained run at ``run`` as an encoder; refused when its network has no embedding."""
    # an encoder's embeddings: neither the run's open set nor its engine head is read
    model = load_model(run, openset=False, engine_head=False)
    if not model.has_embedding:
        raise WhichvoiceError(f"{run}: model {model.config['model']!r} has no embedding")
    return model


def load_encoder(model: str | os.PathLike | None = None) -> Encoder:
    """The encoder a command or route asked for: ``None`` for the default (``"auto"``, or
    the bundled encoder where a part of auto is not installed), ``"auto"`` (the fusion
    shipped with the package), ``"bundled"`` (the encoder shipped with the package), the name
    of a pretrained encoder (``"resemblyzer"``, ``"dvector"``), or a run directory."""
    guard_forks()  # its torch threads would hang a forked child's first call
    if model is None:
        try:
            return fused_encoder()
        except EncoderUnavailableError as e:
            log.warning("using the bundled encoder: the default (auto) cannot load, as %s", e)
            return model_for(bundled_encoder())
    check_run_path(model)
    if str(model) == AUTO:
        return fused_encoder()
    if str(model) in PRETRAINED:
        return PRETRAINED[str(model)]()
    if str(model) in BUNDLED_NAMES:
        return model_for(bundled_encoder())
    if "/" not in str(model) and ":" not in str(model) and not Path(model).exists():
        # a bare word that names no encoder and no folder: a misspelt name, most likely
        import difflib

        names = [AUTO, *sorted(BUNDLED_NAMES), *sorted(PRETRAINED)]
        close = difflib.get_close_matches(str(model).lower(), names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ModelLoadError(
            f"{model}: no such encoder or run; {hint}encoders: {', '.join(names)}, or a run's "
            "folder"
        )
    return model_for(model)


def gallery_encoder(model: str | os.PathLike | None, gallery: str | os.PathLike) -> Encoder:
    """``load_encoder(model)``; with ``model`` None and a gallery already made, the encoder
    that made it, so that a gallery enrolled before ``auto`` became the default (or by
    ``--model resemblyzer``) keeps answering without ``--model``. A gallery of a trained run
    is refused in one line naming what to pass; one made by another version of a shipped
    encoder (auto, resemblyzer, dvector: their weights or input processing changed) is
    refused in one line saying to enroll again, with or without ``model``."""
    if not Path(gallery).exists():
        return load_encoder(model)
    with Gallery(gallery, None, create=False) as g:
        owner = g.model_id if g.names() else ""
    if not owner:  # no voice enrolled yet (or every one removed): it belongs to no encoder
        return load_encoder(model)
    if model is not None:
        encoder = load_encoder(model)
        if isinstance(encoder, (FusedEncoder, PretrainedEncoder)):
            _refuse_other_version(gallery, owner, encoder)
        return encoder  # another encoder altogether: Gallery says so when opened
    found = encoder_of_id(owner)
    if isinstance(found, (FusedEncoder, PretrainedEncoder)):
        _refuse_other_version(gallery, owner, found)
    if found is not None:
        return found
    raise GalleryModelError(
        f"{gallery}: made with model {owner}, which whichvoice does not ship; pass --model "
        "with the run that made it, or use --gallery for another file",
        public=f"the gallery was made with model {owner}",
    )


def _refuse_other_version(gallery, owner: str, encoder: FusedEncoder | PretrainedEncoder):
    """Raise when the gallery's ``owner`` is ``encoder`` at another version: the same kind
    of encoder (the id before its digest), another digest."""
    mine = model_id(encoder)
    if owner == mine or owner.rsplit("-", 1)[0] != mine.rsplit("-", 1)[0]:
        return
    what = "default fusion" if isinstance(encoder, FusedEncoder) else f"{encoder.name} encoder"
    if isinstance(encoder, FusedEncoder) and _upgrade_of(owner, encoder) is not None:
        raise GalleryModelError(
            f"{gallery}: made with an earlier version of the default fusion ({owner}; "
            f"this version's is {mine}): `whichvoice gallery upgrade --gallery "
            f"{shlex.quote(str(gallery))}` carries its voices over, no audio needed",
            public=f"the gallery was made with an earlier version of the {what} ({owner}); "
            "`whichvoice gallery upgrade` carries it over",
        )
    raise GalleryModelError(
        f"{gallery}: made with another version of the {what} ({owner}); this "
        f"version's is {mine}: enroll its voices again into a new gallery",
        public=f"the gallery was made with another version of the {what} ({owner})",
    )


def earlier_fusions() -> list[EarlierFusion]:
    """The fusions shipped before the current one (the package's ``earlier.json``)."""
    path = shipped_dir("fusion") / EARLIER
    if not path.is_file():
        return []
    try:
        return [EarlierFusion.from_dict(d) for d in json.loads(path.read_text())]
    except (OSError, ValueError) as e:  # a damaged package: say so, not "enroll again"
        raise WhichvoiceError(f"{path}: the package's earlier fusions cannot be read ({e})") from e


def _upgrade_of(owner: str, encoder: FusedEncoder) -> Callable[[np.ndarray], np.ndarray] | None:
    """The conversion of ``owner``'s stored embeddings (an earlier shipped fusion's gallery
    id) to ``encoder``'s, or None when ``owner`` is no earlier fusion that can be carried
    over (``fusion.reweighed``)."""
    for record in earlier_fusions():
        if record.id == owner:
            return reweighed(record, encoder.config)
    return None


def upgrade_gallery(gallery: str | os.PathLike) -> tuple[int, str, str]:
    """Carry a gallery made by an earlier version of the default fusion (other weights of
    the same encoders) over to this version's, in place and in one transaction, each
    voice's stored prototypes re-weighted (``fusion.reweighed``: exact where every part
    heard speech). Returns (voices converted, the id it had, the id it has); a gallery with
    nothing to carry over (already of this version, empty, or of another encoder, which
    keeps answering with its own) is left as it is, with 0 voices. A gallery of an earlier
    fusion that cannot be carried over raises."""
    if not Path(gallery).is_file():
        raise GalleryError(f"{gallery}: no gallery there")
    with Gallery(gallery, None, create=False) as g:
        g.check()  # a damaged file is said before anything, not "nothing to do"
        owner = g.model_id
        if owner.rsplit("-", 1)[0] != AUTO:  # empty, or another encoder's: nothing to do
            return 0, owner, owner
        encoder = fused_encoder()
        mine = model_id(encoder)
        if owner == mine:
            return 0, owner, mine
        convert = _upgrade_of(owner, encoder)
        if convert is None:
            raise GalleryModelError(
                f"{gallery}: made with {owner}, a version of the default fusion that cannot be "
                f"carried over to this one ({mine}); enroll its voices again",
                public=f"the gallery was made with model {owner}",
            )
        return g.convert(owner, mine, convert), owner, mine


def encoder_of_id(owner: str) -> Encoder | None:
    """The shipped encoder whose ``model_id`` was ``owner`` (auto, resemblyzer, dvector by
    name; the bundled encoder by its digest), or None: a trained run's."""
    name = owner.rsplit("-", 1)[0]  # what model_id wrote: "<model>-<digest>"
    if name in (AUTO, *PRETRAINED):
        return load_encoder(name)
    bundled = load_encoder("bundled")
    return bundled if model_id(bundled) == owner else None


def option_name(owner: str) -> str | None:
    """What ``--model`` (``--encoder`` for serve) takes for the shipped encoder whose
    ``model_id`` is ``owner`` (``auto``, ``bundled``, ``resemblyzer``, ``dvector``), or None
    (a trained run's, or one of another version). Loads no network."""
    name = owner.rsplit("-", 1)[0]
    if name in (AUTO, *PRETRAINED):
        return name
    with contextlib.suppress(WhichvoiceError, OSError, ValueError, KeyError):
        if encoder_identity(bundled_encoder())[0] == owner:
            return "bundled"
    return None


gallery_module.OPTION_NAME = option_name  # a gallery's refusals name the option that reads it


def fused_encoder(folder: str | os.PathLike | None = None) -> FusedEncoder:
    """The fusion described by ``folder/fusion.json`` (default: the one shipped with the
    package), its parts loaded."""
    folder = Path(folder) if folder is not None else shipped_dir("fusion")
    try:
        fusion = Fusion.from_dict(json.loads((folder / FUSION).read_text()))
    except FileNotFoundError:
        raise WhichvoiceError(
            f"{folder / FUSION}: no fusion here (`python benchmarks/fusion.py --write` makes "
            "the package's)"
        ) from None
    parts = {p: load_encoder(p) for p in fusion.parts}  # "whichvoice": the bundled one
    ids = {p: model_id(e) for p, e in parts.items()}
    return FusedEncoder(fusion, parts, ids, user_dir(AUTO))


def bundled_encoder() -> Path:
    """The encoder shipped inside the package (made by `whichvoice recipe encoder`)."""
    return bundled_encoder_dir()


def model_id(model: Encoder) -> str:
    """What a gallery records as its model: the architecture and a digest of the weights."""
    if isinstance(model, (PretrainedEncoder, FusedEncoder)):
        return f"{model.config['model']}-{model.digest[:16]}"
    if not hasattr(model, "model_id"):  # a name, a path: not yet an encoder
        raise WhichvoiceError(
            f"{model!r:.60}: not an encoder; load one first (load_encoder({model!r:.40}))"
            if isinstance(model, str | os.PathLike)
            else f"{type(model).__name__}: not an encoder (whichvoice.encoders.load_encoder)"
        )
    return model.model_id


def calibration_dir(model: Encoder) -> Path:
    """Where ``calibrate`` writes for ``model``: its run folder, or for an encoder shipped in
    the package (never rewritten) a user folder: ``$WHICHVOICE_ENCODER_DIR``, else
    ``$XDG_DATA_HOME/whichvoice/encoder`` (``~/.local/share/whichvoice/encoder``)."""
    if isinstance(model, (PretrainedEncoder, FusedEncoder)):
        return model.root
    try:
        shipped = model.root.resolve() == bundled_encoder().resolve()
    except WhichvoiceError:
        shipped = False
    if not shipped:
        return model.root
    if os.environ.get(BUNDLED_DIR_ENV):
        return Path(os.environ[BUNDLED_DIR_ENV])
    from whichvoice.files import data_home

    return data_home() / "encoder"


def calibration_of(model: Encoder) -> tuple[float, Calibration]:
    """(threshold, score-to-probability calibration) that verify and identify use: the user's
    own (``whichvoice calibrate``) first, then the one shipped with the encoder."""
    return calibration_file(model)[:2]


def stale_calibration(model: Encoder) -> str | None:
    """Why the user's own calibration of ``model``, an encoder shipped with the package (its
    user folder: ``calibration_dir``), is not used, or None: made for an earlier version of
    the encoder (its weights or its input processing changed since; the ``"encoder"`` it
    records is not ``model_id(model)``), or by a whichvoice that did not record one. A
    trained run's calibration lives beside its weights: it is stale when it records other
    weights (the run was trained on, ``train --resume`` or ``--init``, after it was made)."""
    user = Path(calibration_dir(model))
    shipped = not _runs_own(model)
    path = user / CALIBRATION
    if not path.is_file():
        return None
    try:
        made_for = json.loads(path.read_text()).get("encoder")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: reading it as a calibration says so
    if made_for == model_id(model) or (not shipped and made_for is None):
        return None  # a run's calibration from before the id was recorded: taken as it is
    was = f"made for {made_for}" if made_for else "made by an earlier whichvoice"
    if not shipped:
        return (
            f"{path}: {was}, not {model_id(model)} (the run's weights changed since it was "
            f"made); run `whichvoice calibrate --model {model.root} ...` again"
        )
    return (
        f"{path}: {was}, not {model_id(model)}; using the shipped calibration (run "
        "`whichvoice calibrate` again to use your own)"
    )


@functools.cache
def warn_once(line: str) -> None:
    """``line`` as a warning of the encoders' logger (which the commands always show), once
    a process."""
    log.warning("%s", line)


def _runs_own(model: Encoder) -> bool:
    """Whether ``model``'s calibration is a trained run's own, beside its weights (no shipped
    one to fall back on), rather than a user folder's for an encoder shipped or downloaded."""
    return not isinstance(model, (PretrainedEncoder, FusedEncoder)) and Path(
        calibration_dir(model)
    ) == Path(model.root)


def _shipped_name(model: Encoder) -> str | None:
    """The package folder (``data/<name>``) holding a non-run encoder's shipped calibration."""
    if isinstance(model, FusedEncoder):
        return "fusion"
    return model.name if isinstance(model, PretrainedEncoder) else None


def shipped_calibration(model: Encoder) -> tuple[float, Calibration, dict] | None:
    """The calibration an encoder shipped with the package answers with when the user has
    none of their own (``calibrate`` compares a new one with it); None for a trained run,
    whose only calibration is its own."""
    user = Path(calibration_dir(model))
    for root in (
        *([shipped_dir(_shipped_name(model))] if _shipped_name(model) else []),
        model.root,
    ):
        if Path(root) != user and (cal := _read_calibration(Path(root) / CALIBRATION)):
            return cal
    return None


def calibration_path(model: Encoder, *, stale: bool | None = None) -> Path | None:
    """The calibration.json that ``calibration_file`` reads for ``model``: the user's own
    (``calibrate``'s, unless it was made for another encoder: ``stale``, by default
    ``stale_calibration``'s), else the one shipped with the package, else the run's; None
    where there is none."""
    user = Path(calibration_dir(model))
    if stale is None:
        stale = bool(stale_calibration(model))
    for root in (
        user,
        *([shipped_dir(_shipped_name(model))] if _shipped_name(model) else []),
        model.root,
    ):
        if stale and Path(root) == user:
            continue
        if (Path(root) / CALIBRATION).exists():
            return Path(root) / CALIBRATION
    return None


def calibration_file(model: Encoder) -> tuple[float, Calibration, dict]:
    """``calibration_of``'s (threshold, calibration) and the whole calibration.json
    (``calibration_read``'s, without the file's path)."""
    return calibration_read(model)[:3]


def calibration_read(model: Encoder) -> tuple[float, Calibration, dict, Path]:
    """``calibration_file``'s answer and the calibration.json it was read from. A user's
    calibration of an encoder shipped with the package (its user folder) is used only with
    the encoder it was made for (``stale_calibration``): otherwise it is passed over with a
    warning, and the shipped one is used."""
    stale = stale_calibration(model)
    if stale and _runs_own(model):
        raise WhichvoiceError(stale)  # a trained run's: there is no other to use
    if stale:
        warn_once(stale)
    path = calibration_path(model, stale=bool(stale))
    cal = None if path is None else _read_calibration(path)
    if cal is not None:
        return (*cal, path)
    raise WhichvoiceError(
        f"{model.root}: not calibrated; run `whichvoice calibrate --model {model.root} ...`"
    )
