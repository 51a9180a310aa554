"""ONNX export (`ssr-jax export`): ONNX Runtime on the exported file gives the framework's ages for every backbone and
head and for the released Keras weights; the metadata travels with the file; bad input is one line, nothing written.

The models are freshly initialised (NumPy draws, no training) and saved as every run saves them: what is compared is
the translation, which random weights exercise as well as trained ones."""
import json
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

from configs import dex, densenet, mobilenet, regression, ssrnet  # noqa: E402
from ssr_jax import export, onnx_graph, saved_model, workdir as workdir_lib  # noqa: E402
from ssr_jax.data.images import load_image  # noqa: E402
from ssr_jax.models import abstract_variables, create_model, heads, predict_age  # noqa: E402
from ssr_jax.predict import predict_files  # noqa: E402

TOLERANCE = 1e-3  # years


def ssr_rgb():
    """SSR-Net (3,3,3) trained on RGB in [−1, 1]: the graph takes RGB and scales inside."""
    config = ssrnet.get_config("smoke")
    config.data.colour_order, config.data.input_scale = "RGB", "symmetric"
    return config


def corn():
    """A head with a readout of another kind (a cumulative product of sigmoids); its rules on their own below."""
    config = ssrnet.get_config("smoke")
    config.model.head, config.model.stages, config.model.decode = "corn", (11,), "expectation"
    config.data.input_scale = "symmetric"
    return config


def scaled(module, scale: str = "unit"):
    config = module.get_config("smoke")
    config.data.input_scale = scale  # O(1) inputs for the random weights (`raw` is the Keras test's)
    return config


MODELS = {"ssr": ssr_rgb, "dex": lambda: scaled(dex), "regression": lambda: scaled(regression),
          "mobilenet": lambda: scaled(mobilenet, "symmetric"), "densenet": lambda: scaled(densenet), "corn": corn}


def random_variables(config, seed: int = 0) -> dict:
    """Kernels N(0, 2/fan_in) (He et al.: activations keep their scale through ReLUs), BatchNorm statistics and
    scales near (0, 1), small biases; for inputs scaled to [−1, 1] or [0, 1]."""
    rng = np.random.default_rng(seed)

    def leaf(path, shape):
        name = path[-1].key
        if name == "kernel":
            return rng.standard_normal(shape.shape, np.float32) * np.sqrt(2 / np.prod(shape.shape[:-1]))
        if name in ("scale", "var"):
            return 1 + 0.1 * rng.random(shape.shape, np.float32)
        return 0.1 * rng.standard_normal(shape.shape, np.float32)

    return jax.tree_util.tree_map_with_path(leaf, abstract_variables(config.model, config.data.image_size))


def varied_images(count: int) -> np.ndarray:
    """uint8 `[count, 64, 64, 3]`: a different flat colour per image under noise, so that random models' ages differ
    between images (noise alone gives nearly one age)."""
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (count, 1, 1, 3))
    return np.clip(colours + rng.integers(-40, 41, (count, 64, 64, 3)), 0, 255).astype(np.uint8)


def onnx_outputs(path, images: np.ndarray) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"images": images})))


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory):
    """(name, config, variables, model directory, the export's result) of one model, saved and exported once per
    module."""
    config = MODELS[request.param]()
    variables = random_variables(config)
    directory = saved_model.save(tmp_path_factory.mktemp(request.param) / "model", config, variables)
    result = export.export(directory, directory.parent / "model.onnx", check=False)
    return request.param, config, variables, directory, result


def test_onnx_runtime_gives_the_frameworks_ages(exported):
    name, config, variables, _, result = exported
    rgb_or_bgr = varied_images(5)  # a batch size other than any the export saw
    outputs = onnx_outputs(result["out"], rgb_or_bgr)
    stored = rgb_or_bgr if config.data.colour_order == "BGR" else rgb_or_bgr[..., ::-1]
    expected = np.asarray(saved_model.make_apply(config)(variables, stored))
    assert np.ptp(expected) > 0.05, expected  # a comparison that can fail
    np.testing.assert_allclose(outputs["age"], expected, atol=TOLERANCE, rtol=0)
    assert outputs["age"].shape == (5,) and outputs["age"].dtype == np.float32
    assert list(outputs) == list(result["outputs"])
    print(f"{name}: max |age difference| {np.max(np.abs(outputs['age'] - expected)):.1e} years, "
          f"{result['bytes']:,} bytes")


def test_metadata_travels_with_the_file(exported):
    name, config, _, _, result = exported
    model = onnx.load(result["out"])
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert model.opset_import[0].version == result["opset"] == onnx_graph.OPSET
    assert metadata["ssr_jax.decision_rule"] == heads.decode_rule(config.model)
    assert json.loads(metadata["ssr_jax.config"])["model"]["head"] == config.model.head
    assert int(metadata["ssr_jax.parameters"]) == result["parameters"] > 0
    assert json.loads(metadata["ssr_jax.environment"])["packages"]["jax"] == jax.__version__
    assert json.loads(metadata["ssr_jax.export_environment"])["onnxruntime"] == onnxruntime.__version__
    assert metadata["ssr_jax.colour_order"] == config.data.colour_order
    assert json.loads(metadata["ssr_jax.outputs"]) == result["outputs"]
    assert metadata["ssr_jax.architecture"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_raw_outputs_follow_the_heads(exported):
    name, config, _, _, result = exported
    outputs = result["outputs"]
    if name == "ssr":
        assert [key for key in outputs if key != "age"] == [f"{key}_{k}" for key in ("delta", "eta", "p")
                                                           for k in (1, 2, 3)]
        assert outputs["p_1"] == ["N", 3] and outputs["delta_1"] == ["N"]
    else:
        assert len(outputs) == 2 and "age" in outputs


@pytest.mark.parametrize("head", sorted(set(heads.HEADS) - {"ssr"}))
def test_every_heads_readout_under_every_rule_translates(head):
    """Each head's readout (`predict_age`) alone, on random raw outputs: the rules' cumulative sums, products,
    comparisons, argmax and bin lookups, at a tolerance for float32 rounding (mode and median are bin ages)."""
    config = ssrnet.get_config("smoke")
    config.model.head, config.model.stages = head, (11,)
    model = create_model(config.model)
    images = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    (key, (shape,)), = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                                      abstract_variables(config.model, 64), images).items()
    raw = np.random.default_rng(2).standard_normal((7, *shape.shape[1:])).astype(np.float32) * 2
    batch, = jax.export.symbolic_shape("N")
    for rule in heads.HEADS[head].rules:
        def readout(outputs):
            return predict_age(config.model, {key: (outputs,)}, lambda_local=1.0, lambda_d=1.0, rule=rule)

        example = jax.ShapeDtypeStruct((batch, *shape.shape[1:]), np.float32)
        graph = onnx_graph.to_onnx(jax.make_jaxpr(readout)(example), example, input_name="images",
                                   output_names=["age"], graph_name=head)
        model_proto = onnx_graph.make_model(graph, producer_version="test", doc_string="")
        session = onnxruntime.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(["age"], {"images": raw})[0], jax.jit(readout)(raw), atol=TOLERANCE,
                                   rtol=0, err_msg=f"{head} / {rule}")


# ----------------------------------------------------------------------------------------------------------------
# The translator, operation by operation: each function on rows [N, 6] or images [N, 8, 8, 3], N symbolic
# ----------------------------------------------------------------------------------------------------------------
@jax.custom_vjp
def cube(x):
    return x * x * x


cube.defvjp(lambda x: (x * x * x, x), lambda x, g: (3 * x * x * g,))
TABLE = np.linspace(0, 1, 6, dtype=np.float32)
MATRIX = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
KERNEL = np.random.default_rng(1).standard_normal((3, 3, 3, 4)).astype(np.float32)
NHWC = ("NHWC", "HWIO", "NHWC")
ROWS = {
    "round": lambda x: jnp.round(x * 3) + lax.round(x * 3, lax.RoundingMethod.AWAY_FROM_ZERO),
    "isfinite": lambda x: jnp.isfinite(x / (x - x[:, :1])).astype(jnp.float32),
    "rem_pad_split": lambda x: jnp.fmod(jnp.pad(x, ((0, 0), (1, 2)), constant_values=0.5), 0.7)[:, 1:7]
    + jnp.split(x, [2], axis=1)[1].sum(1, keepdims=True),
    "cumulative": lambda x: lax.cummax(x, axis=1) + lax.cummin(x, axis=1, reverse=True) + jnp.cumsum(x, axis=1)
    + lax.cumsum(x, axis=1, reverse=True) + jnp.cumprod(x, axis=1),
    "select_clamp": lambda x: jnp.where(x > 0, x, 0.5 * x) + lax.clamp(-0.5, x, 0.5),
    "powers": lambda x: x ** 3 + x ** 2 + jnp.square(x) + jnp.abs(x) ** 1.5,
    "unary": lambda x: jnp.log1p(jnp.abs(x)) + jnp.expm1(x) + jnp.sqrt(jnp.abs(x)) + lax.rsqrt(jnp.abs(x) + 1)
    + jnp.sign(x) + jnp.floor(x) + jnp.ceil(x) + jax.scipy.special.erf(x) + jnp.sin(x) + jnp.cos(x) + jnp.exp(x)
    + jnp.log(jnp.abs(x) + 1) + jnp.tanh(x) + jax.nn.sigmoid(x) - x + jnp.copy(x),
    "logical": lambda x: (((x > 0) & (x < 1)) | ~(x >= -0.5) | (x != x[:, :1]) | (x == 0) | (x <= -1)).astype(
        jnp.float32),
    "reductions": lambda x: jnp.min(x, axis=1) + jnp.prod(x, axis=1) + jnp.argmin(x, axis=1)
    + jnp.any(x > 1, axis=1) + jnp.all(x > -1, axis=1) + jnp.max(x, axis=1) + jnp.sum(x, axis=1),
    "layout": lambda x: (x.T @ x)[:, ::-1][:, 1:5:2],
    "dot_general": lambda x: jnp.einsum("ni,ni->n", x, x) + jnp.sum(x @ MATRIX, axis=1)
    + jnp.einsum("ni,ij->jn", x, MATRIX).sum(0),
    "integers": lambda x: (x * 10).astype(jnp.int32) // 3 + (jnp.arange(6) * 7 - 20) // 3,
    "indexing": lambda x: jnp.asarray(TABLE)[jnp.argmax(x, axis=1)] + x[:, 2] + x[:, jnp.argmin(x[0])] + x[-1].sum(),
    "softmax": lambda x: jax.nn.softmax(x) + jax.nn.log_softmax(x),
    "calls": lambda x: cube(x) + jax.checkpoint(jnp.sin)(x) + jax.jit(jnp.cos)(x),
    "broadcast": lambda x: x + jnp.ones_like(x[:, :1]) + jnp.arange(6) + jnp.broadcast_to(jnp.float32(2), x.shape),
}
IMAGES = {
    "conv_same_strided": lambda x: lax.conv_general_dilated(x, KERNEL, (2, 2), "SAME", dimension_numbers=NHWC),
    "conv_padded_dilated": lambda x: lax.conv_general_dilated(x, KERNEL, (1, 1), ((1, 2), (0, 1)),
                                                              rhs_dilation=(2, 2), dimension_numbers=NHWC),
    "pools_same": lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    + nn.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME"),
}


def translated(fn, shape: tuple, dtype=np.float32):
    """An ONNX Runtime session of `fn` on `[N, *shape]`, N symbolic."""
    batch, = jax.export.symbolic_shape("N")
    example = jax.ShapeDtypeStruct((batch, *shape), dtype)
    graph = onnx_graph.to_onnx(jax.make_jaxpr(fn)(example), example, input_name="x", output_names=["y"],
                               graph_name="test")
    model = onnx_graph.make_model(graph, producer_version="test", doc_string="")
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", [*ROWS, *IMAGES])
def test_each_operation_translates_to_what_jax_computes(name):
    fn, shape = (ROWS[name], (6,)) if name in ROWS else (IMAGES[name], (8, 8, 3))
    x = np.random.default_rng(3).standard_normal((5, *shape)).astype(np.float32)
    got, want = translated(fn, shape).run(["y"], {"x": x})[0], np.asarray(jax.jit(fn)(x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_an_operation_without_a_rule_is_refused_by_name():
    with pytest.raises(onnx_graph.UnsupportedPrimitive, match="'sort' has no ONNX translation"):
        translated(lambda x: jnp.sort(x, axis=1), (6,))


def test_released_morph2_weights_export_with_keras_and_predict_ages(released_morph2, tmp_path):
    directory, golden = released_morph2
    if not (golden / "keras_outputs.npz").is_file():
        pytest.skip(f"golden outputs not available under {golden}")
    result = export.export(directory, tmp_path / "morph2.onnx", check=False)
    keras = np.load(golden / "keras_outputs.npz")
    outputs = onnx_outputs(result["out"], keras["inputs_bgr"].astype(np.uint8))
    np.testing.assert_allclose(outputs["age"], keras["age"][:, 0], atol=TOLERANCE, rtol=0)
    for k in (1, 2, 3):  # the raw outputs are Keras's layers
        for key in ("p", "eta", "delta"):
            np.testing.assert_allclose(outputs[f"{key}_{k}"], keras[f"{key}{k}"].reshape(outputs[f"{key}_{k}"].shape),
                                       atol=1e-5, rtol=0)
    # `ssr-jax predict`'s ages on the golden image files, through its own reading and resizing.
    files = sorted(golden.glob("*.png"))
    predicted = [row["age"] for row in predict_files(directory, files)]
    onnx_ages = onnx_outputs(result["out"], np.stack([load_image(path, 64) for path in files]))["age"]
    np.testing.assert_allclose(onnx_ages, predicted, atol=TOLERANCE, rtol=0)
    print(f"morph2: max |age difference| {np.max(np.abs(onnx_ages - predicted)):.1e} years vs predict, "
          f"{np.max(np.abs(outputs['age'] - keras['age'][:, 0])):.1e} vs Keras, {result['bytes']:,} bytes")


# ----------------------------------------------------------------------------------------------------------------
# The command: what it prints, and bad input as one line with nothing written
# ----------------------------------------------------------------------------------------------------------------
def cli(capsys, *args) -> tuple[int, str, str]:
    """`ssr-jax ARGS` in this process: (exit status, stdout, stderr)."""
    from ssr_jax import cli as cli_lib

    with pytest.raises(SystemExit) as exit_:
        cli_lib.main(["ssr-jax", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err[-3000:]
    return exit_.value.code or 0, captured.out, captured.err


def refusal(capsys, *args) -> str:
    code, _, err = cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)
    return err.strip()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A CORN head on the SSR-Net trunk (three decision rules) saved as a model directory."""
    return saved_model.save(tmp_path_factory.mktemp("small") / "model", corn(), random_variables(corn()))


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


def test_decode_chooses_the_graphs_decision_rule(small_run, tmp_path):
    result = export.export(small_run, tmp_path / "median.onnx", decode="median", check=False)
    metadata = {prop.key: prop.value for prop in onnx.load(result["out"]).metadata_props}
    assert metadata["ssr_jax.decision_rule"] == json.loads(metadata["ssr_jax.config"])["model"]["decode"] == "median"
    config = saved_model.read_config(small_run)
    bins = onnx_outputs(result["out"], varied_images(5))["age"] / (config.model.v / config.model.stages[0])
    np.testing.assert_allclose(bins, np.round(bins), atol=1e-4)  # CORN's median is a bin age, a multiple of V / s


def failing_check(*args):
    raise export.ExportError("nothing written")


def test_the_command_prints_opset_and_size_and_checks_itself(small_run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code, stdout, _ = cli(capsys, "export", small_run, "--format", "onnx", "--out", out)
    assert code == 0
    assert f"ONNX opset {onnx_graph.OPSET}, {out.stat().st_size:,} bytes" in stdout, stdout
    assert "checked: ONNX Runtime's ages equal the framework's within" in stdout
    assert "ssr_jax.check" in {prop.key for prop in onnx.load(out).metadata_props}
    before = out.read_bytes()
    assert refusal(capsys, "export", small_run, "--out", out) == (
        f"error: --out {out} exists; pass --overwrite to replace it, or another --out")
    assert out.read_bytes() == before
    # A check that fails writes nothing, even with --overwrite: the old file stays.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "_check", failing_check)
        assert refusal(capsys, "export", small_run, "--out", out, "--overwrite") == "error: nothing written"
        assert out.read_bytes() == before and leftovers(tmp_path) == []
        patch.setattr(export, "_check", lambda *args: 0.0)
        assert cli(capsys, "export", small_run, "--out", out, "--overwrite")[0] == 0
    assert out.read_bytes() != before and leftovers(tmp_path) == []


def test_bad_input_is_one_line_and_writes_nothing(small_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.onnx"
    assert refusal(capsys, "export", small_run, "--format", "tflite", "--out", out) == (
        "error: --format='tflite': ssr-jax exports to onnx")
    empty = tmp_path / "untrained"
    empty.mkdir()
    (empty / "config.json").write_bytes((small_run / "config.json").read_bytes())
    assert "holds no weights yet" in refusal(capsys, "export", empty, "--out", out)
    with workdir_lib.exclusive(small_run, what="ssr-jax train"):
        assert refusal(capsys, "export", small_run, "--out", out).startswith(
            f"error: {small_run} is still training (pid ")
    (tmp_path / "file").write_text("")
    assert "is not writable" in refusal(capsys, "export", small_run, "--out", tmp_path / "file" / "m.onnx")
    assert "is a directory" in refusal(capsys, "export", small_run, "--out", tmp_path)
    assert refusal(capsys, "export", small_run, "--out", out, "--decode", "mean").startswith(
        "error: model.decode='mean': the corn head can be read by ")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert refusal(capsys, "export", small_run, "--out", out) == (
        "error: ONNX export needs the export extra (onnxruntime is not installed): run pip install -e '.[export]' "
        "in the ssr_jax checkout")
    assert not out.exists() and leftovers(tmp_path) == []
