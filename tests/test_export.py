"""ONNX export (`ssr-jax export`): ONNX Runtime on the exported file gives the framework's ages for every backbone and
head and for the released Keras weights; the metadata travels with the file; bad input is one line, nothing written.

The models are freshly initialised (NumPy draws, no training) and saved as every run saves them: what is compared is
the translation, which random weights exercise as well as trained ones."""
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

from configs import dex, densenet, mobilenet, regression, ssrnet  # noqa: E402
from ssr_jax import export, keras_import, onnx_graph, saved_model, workdir as workdir_lib  # noqa: E402
from ssr_jax.data.images import load_image  # noqa: E402
from ssr_jax.models import abstract_variables, create_model, heads, predict_age  # noqa: E402
from ssr_jax.predict import predict_files  # noqa: E402

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"
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
    assert metadata["ssr_jax.architecture"] and model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


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


def test_released_morph2_weights_export_with_keras_and_predict_ages(tmp_path):
    h5 = REFERENCE / "pretrained" / "morph2" / "ssrnet_3_3_3_64_1.0_1.0.h5"
    golden = REFERENCE / "golden" / "morph2"
    if not h5.is_file() or not (golden / "keras_outputs.npz").is_file():
        pytest.skip(f"reference weights or golden outputs not available under {REFERENCE}")
    directory = keras_import.convert_keras(h5, tmp_path / "morph2", ssrnet.get_config())
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
