"""`ssr-jax export`: a model directory (a training run, a sweep run, a `convert-keras` output) as one ONNX file that
ages images in any ONNX runtime, with what the model is travelling along as metadata.

The graph is the framework's own evaluation pass (`saved_model.evaluation_pass`: `model_input`, the model, the
head's readout at the run's decision rule, or `decode`'s, and λ), traced once at a symbolic batch size with the
weights as constants and translated to ONNX operators by `ssr_jax.onnx_graph`, so every backbone and head that
evaluates in JAX exports the same way. Convolutions and poolings are traced as XLA's own (`model.conv="xla"`): the
oneDNN path is a custom call that no ONNX runtime has; the values are the same up to float rounding.

  input   images   uint8 [N, H, W, 3], 0–255, in the run's colour order (`data.colour_order`; the scaling of
                   `data.input_scale` happens inside the graph)
  outputs age      float32 [N], years
          one per array of the head's raw outputs, named after them ("p_1" … "delta_3" for SSR's K = 3 stages,
                   "p", "logits"); the metadata lists them with their shapes
  metadata (ONNX metadata properties, all strings; JSON where structured) `ssr_jax.architecture`,
          `ssr_jax.decision_rule`, `ssr_jax.parameters`, `ssr_jax.config`, `ssr_jax.environment` (the run's provenance),
          `ssr_jax.export_environment`, `ssr_jax.colour_order` (BGR or RGB), `ssr_jax.input`, `ssr_jax.outputs`,
          `ssr_jax.checkpoint_step`, `ssr_jax.check`

Before anything is written, ONNX Runtime runs the graph on `CHECK_IMAGES` random images and must give the ages the
framework gives (`saved_model.make_apply`, what `ssr-jax predict` runs) within `TOLERANCE_YEARS`. The file is
written under a temporary name and renamed, so a failed export leaves no file and an old one intact.

Why our own translator rather than a converter package: jax2onnx, the maintained JAX → ONNX converter, requires
orbax-checkpoint < 0.11.37 from its 0.13.1 on (this project pins 0.12.8), and 0.13.0, the last release that accepts
it, fails on jax 0.10.2 (`jax.interpreters.batching.not_mapped` is gone; its patch of `flax.linen.avg_pool` breaks
Flax's own calls); tf2onnx would need TensorFlow, and jax2tf now always emits one XlaCallModule op (StableHLO inside
a TF graph) that tf2onnx cannot translate; `jax.export` gives StableHLO, which no ONNX runtime reads. A jaxpr is a
small, stable language: the few dozen primitives these models use map one to one onto ONNX operators, and an
unknown one is refused by name.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from ssr_jax import checkpoint, config_lib, saved_model, workdir as workdir_lib
from ssr_jax.models import abstract_variables, architecture_label, count_parameters, heads, validate_head

FORMATS = ("onnx",)
TOLERANCE_YEARS = 1e-3
RTOL = 1e-5
CHECK_IMAGES = 8
INPUT_NAME = "images"
INSTALL_EXTRA = "pip install -e '.[export]'"


class ExportError(ValueError):
    """A model directory, output path or installation that cannot give an export; the message says why and what to
    do, in one line."""


def _translator():
    """(onnx, onnxruntime, ssr_jax.onnx_graph), or `ExportError` naming the pip command when the extra is missing."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ExportError(f"ONNX export needs the export extra ({error.name} is not installed): run "
                          f"{INSTALL_EXTRA} in the ssr_jax checkout") from None
    from ssr_jax import onnx_graph

    return onnx, onnxruntime, onnx_graph


def check_model_dir(model_dir: str | os.PathLike) -> int:
    """The checkpoint step `model_dir` would export; `ExportError` if it is still training or holds no weights."""
    saved_model.read_config(model_dir)  # FileNotFoundError / WorkdirError: not a model directory
    training = workdir_lib.holder(model_dir)
    if training is not None:
        raise ExportError(f"{model_dir} is still training ({training}); export it once that run has ended")
    step = checkpoint.latest_step(pathlib.Path(model_dir) / "checkpoint")
    if step is None:
        raise ExportError(f"{model_dir} holds no weights yet (no checkpoint): a run writes one after its first "
                          "epoch; pass a finished run or a convert-keras output")
    return step


def check_out(out: str | os.PathLike, *, overwrite: bool) -> pathlib.Path:
    """`out` as an absolute path whose directory exists and is writable; `ExportError` for an existing file without
    `overwrite` or a directory in the way."""
    path = pathlib.Path(out).expanduser().absolute()
    if path.is_dir():
        raise ExportError(f"--out {out} is a directory; pass a file name, e.g. --out "
                          f"{pathlib.Path(out) / 'model.onnx'}")
    if path.exists() and not overwrite:
        raise ExportError(f"--out {out} exists; pass --overwrite to replace it, or another --out")
    return workdir_lib.prepare(path.parent, flag="--out") / path.name


def _output_names(outputs) -> list[str]:
    """"p_1" … for an output with one array per stage (1-based, as the Keras layers), the bare name for one stage."""
    names = []
    for key, stages in sorted(outputs.items()):
        names += [key] if len(stages) == 1 else [f"{key}_{k + 1}" for k in range(len(stages))]
    return names


def export(model_dir: str | os.PathLike, out: str | os.PathLike, *, format: str = "onnx", overwrite: bool = False,
           decode: str | None = None, check: bool = True) -> dict:
    """Writes the ONNX file of `model_dir` to `out` (module docstring), its ages read by the decision rule `decode`
    (default: the run's `model.decode`; a rule its head cannot give is a `ConfigError`, before anything is loaded).
    Returns what was written: `out`, `opset`, `bytes`, `outputs` ({name: shape}), `parameters`, `colour_order`,
    `image_size` and `max_age_difference` (years, ONNX Runtime vs the framework on `CHECK_IMAGES` random images; None
    without `check`, which compiles nothing, for callers that compare on images of their own)."""
    if format not in FORMATS:
        raise ExportError(f"--format={format!r}: ssr-jax exports to {', '.join(FORMATS)}")
    onnx, onnxruntime, onnx_graph = _translator()
    step = check_model_dir(model_dir)
    rule = {} if decode is None else {"model.decode": decode}
    validate_head(config_lib.apply_overrides(saved_model.read_config(model_dir), rule).model)
    path = check_out(out, overwrite=overwrite)
    config, variables = saved_model.load(model_dir)
    config = config_lib.apply_overrides(config, rule)
    if config.model.compute_dtype != "float32":
        raise ExportError(f"{model_dir} computes in {config.model.compute_dtype}; ONNX runtimes run bfloat16 "
                          "convolutions on few devices, so export takes float32 models only")
    data = config.data
    forward = saved_model.evaluation_pass(config_lib.apply_overrides(config, {"model.conv": "xla"}))

    def graph(images):  # images in the run's colour order; the framework's are stored BGR (model_input)
        return forward(variables, images if data.colour_order == "BGR" else images[..., ::-1])

    batch, = jax.export.symbolic_shape("N")
    example = jax.ShapeDtypeStruct((batch, data.image_size, data.image_size, 3), jnp.uint8)
    closed, (_, output_shapes) = jax.make_jaxpr(graph, return_shape=True)(example)
    names = _output_names(output_shapes)  # in the order jax flattens the outputs: sorted keys, then stages
    try:
        onnx_graph_proto = onnx_graph.to_onnx(closed, example, input_name=INPUT_NAME, output_names=["age", *names],
                                              graph_name=architecture_label(config.model))
    except onnx_graph.UnsupportedPrimitive as error:
        raise ExportError(f"{model_dir} cannot be exported yet: {error}") from None
    shapes = {"age": ["N"], **{name: ["N", *leaf.shape[1:]] for name, leaf in
                               zip(names, jax.tree.leaves(output_shapes))}}
    model = onnx_graph.make_model(onnx_graph_proto, producer_version=importlib.metadata.version("ssr_jax"),
                                  doc_string=f"ssr_jax {architecture_label(config.model)}: ages in years from uint8 "
                                             f"{data.colour_order} images {data.image_size}x{data.image_size}")
    difference = _check(model.SerializeToString(), onnxruntime, config, variables) if check else None
    counts = count_parameters(abstract_variables(config.model, data.image_size))
    metadata = _metadata(model_dir, config, step=step, parameters=counts["total"], outputs=shapes,
                         versions={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__})
    if difference is not None:
        metadata["ssr_jax.check"] = (f"ONNX Runtime {onnxruntime.__version__} vs ssr_jax on {CHECK_IMAGES} random "
                                     f"images: max |age difference| {difference:.2e} years")
    onnx.helper.set_model_props(model, metadata)
    serialized = model.SerializeToString()
    workdir_lib.write_text_atomic(path, serialized)
    return {"out": str(path), "opset": onnx_graph.OPSET, "bytes": len(serialized), "outputs": shapes,
            "parameters": counts["total"], "max_age_difference": difference, "colour_order": data.colour_order,
            "image_size": data.image_size}


def _metadata(model_dir, config, *, step: int, parameters: int, outputs: dict, versions: dict) -> dict[str, str]:
    """The ONNX metadata properties (module docstring)."""
    record = workdir_lib.read_json(pathlib.Path(model_dir) / "config.json")
    data = config.data
    return {
        "ssr_jax.architecture": architecture_label(config.model),
        "ssr_jax.decision_rule": heads.decode_rule(config.model),
        "ssr_jax.parameters": str(parameters),  # trainable and BatchNorm statistics, as `ssr-jax info`'s total
        "ssr_jax.config": workdir_lib.dumps(config_lib.to_json(config)),
        "ssr_jax.environment": workdir_lib.dumps({key: value for key, value in record.items() if key != "config"}),
        "ssr_jax.export_environment": workdir_lib.dumps({**workdir_lib.provenance(), **versions}),
        "ssr_jax.colour_order": data.colour_order,
        "ssr_jax.input": f"{INPUT_NAME}: uint8 [N, {data.image_size}, {data.image_size}, 3], {data.colour_order}, "
                         f"0-255; scaled inside the graph (data.input_scale={data.input_scale})",
        "ssr_jax.outputs": json.dumps(outputs),
        "ssr_jax.checkpoint_step": str(step),
    }


def _check(serialized: bytes, onnxruntime, config, variables) -> float:
    """max |ONNX Runtime's ages − `saved_model.make_apply`'s| on `CHECK_IMAGES` random images, in years;
    `ExportError` beyond `TOLERANCE_YEARS` (plus float32 rounding, `RTOL`, for ages far outside any age range)."""
    size = config.data.image_size
    images = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES, size, size, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    onnx_ages = session.run(["age"], {INPUT_NAME: images})[0]
    stored = images if config.data.colour_order == "BGR" else images[..., ::-1]
    ages = np.asarray(saved_model.make_apply(config)(variables, stored))
    difference = float(np.max(np.abs(onnx_ages - ages)))
    if not np.allclose(onnx_ages, ages, atol=TOLERANCE_YEARS, rtol=RTOL):
        raise ExportError(f"the exported graph's ages differ from the framework's by up to {difference:.3g} years "
                          f"(tolerance {TOLERANCE_YEARS:g}); nothing written; please report it")
    return difference


def summary(result: dict) -> str:
    """What `ssr-jax export` prints: the file, opset, size, input, outputs and the check."""
    outputs = ", ".join(f"{name} [{', '.join(map(str, shape))}]" for name, shape in result["outputs"].items())
    size = result["image_size"]
    return (f"written: {result['out']} (ONNX opset {result['opset']}, {result['bytes']:,} bytes, "
            f"{result['parameters']:,} parameters)\n"
            f"input:   images uint8 [N, {size}, {size}, 3] {result['colour_order']} 0-255\n"
            f"outputs: {outputs}"
            + ("" if result["max_age_difference"] is None else
               f"\nchecked: ONNX Runtime's ages equal the framework's within {result['max_age_difference']:.1e} "
               f"years on {CHECK_IMAGES} random images"))
