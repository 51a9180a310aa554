"""Keras HDF5 import: the layer map on files written here, clear errors, and the released weights vs Keras outputs."""
import json
import pathlib

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ssrnet
from ssr_jax import config_lib, keras_import, saved_model
from ssr_jax.models import abstract_variables, create_model, predict_age

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"
WEIGHT_SETS = ("morph2", "imdb", "wiki", "megaface_asian")


def keras_layout(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {weight: array}} with random values in the shapes an SSR-Net (3,3,3) weight file holds."""
    shapes = jax.tree.map(lambda leaf: leaf.shape,
                          abstract_variables(keras_import.reference_config(ssrnet.get_config()).model, keras_import.IMAGE_SIZE))
    rng = np.random.default_rng(seed)
    layout = {}
    for layer, (module_path, weights) in keras_import.layer_map().items():
        layout[layer] = {}
        for keras_name, (collection, leaf) in weights.items():
            node = shapes[collection]
            for name in module_path:
                node = node[name]
            array = rng.standard_normal(node[leaf]).astype(np.float32)
            layout[layer][keras_name] = np.abs(array) if keras_name == "moving_variance" else array  # checked > 0
    return layout


def write_h5(path, layout, *, full_model: bool = False) -> pathlib.Path:
    """A Keras 2 `save_weights` file (or `model.save` file: layers under `model_weights/`) holding `layout`."""
    with h5py.File(path, "w") as file:
        root = file.create_group("model_weights") if full_model else file
        root.attrs["keras_version"] = b"2.0.6"
        root.attrs["layer_names"] = np.array([b"input_1", *(name.encode() for name in layout)])
        root.create_group("input_1").attrs["weight_names"] = np.array([], np.float64)  # weightless, as in Keras
        for layer, weights in layout.items():
            group = root.create_group(layer)
            group.attrs["weight_names"] = np.array([f"{layer}/{name}:0".encode() for name in weights])
            for name, array in weights.items():
                group.create_dataset(f"{layer}/{name}:0", data=array)
    return pathlib.Path(path)


@pytest.mark.parametrize("full_model", [False, True])
def test_written_weights_arrive_where_the_map_says(tmp_path, full_model):
    layout = keras_layout()
    directory = keras_import.convert_keras(write_h5(tmp_path / "w.h5", layout, full_model=full_model),
                                           tmp_path / "model", ssrnet.get_config())
    config, variables = saved_model.load(directory)
    assert config.model.stages == (3, 3, 3) and config.data.image_size == 64
    record = json.loads((directory / "config.json").read_text())
    assert record["source"] == {"kind": "keras", "file": str((tmp_path / "w.h5").resolve()),
                                "expects": "64x64 BGR raw 0-255"}
    np.testing.assert_array_equal(variables["params"]["x_stream"]["conv1"]["kernel"], layout["conv2d_1"]["kernel"])
    np.testing.assert_array_equal(variables["params"]["s_stream"]["bn4"]["scale"],
                                  layout["batch_normalization_8"]["gamma"])
    np.testing.assert_array_equal(variables["batch_stats"]["x_stream"]["bn2"]["var"],
                                  layout["batch_normalization_2"]["moving_variance"])
    np.testing.assert_array_equal(variables["params"]["stage2"]["x_mix"]["bias"], layout["dense_5"]["bias"])
    np.testing.assert_array_equal(variables["params"]["stage3"]["eta"]["kernel"],
                                  layout["local_delta_stage3"]["kernel"])
    # Every Flax leaf came from exactly one Keras array: all values are distinct random draws.
    written = sorted(array.tobytes() for weights in layout.values() for array in weights.values())
    loaded = sorted(np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(variables))
    assert written == loaded


def test_missing_layer_names_the_layer(tmp_path):
    layout = keras_layout()
    del layout["conv2d_7"]
    with pytest.raises(ValueError, match=r"layer conv2d_7 missing from .*SSR-Net \(3,3,3\) weight file"):
        keras_import.read_keras_weights(write_h5(tmp_path / "w.h5", layout), ssrnet.get_config())


def test_misshaped_layer_names_the_layer_and_expected_shape(tmp_path):
    layout = keras_layout()
    layout["dense_3"]["kernel"] = np.zeros((5, 10), np.float32)
    with pytest.raises(ValueError, match=r"dense_3/kernel: expected shape \(3, 6\), file has \(5, 10\)"):
        keras_import.read_keras_weights(write_h5(tmp_path / "w.h5", layout), ssrnet.get_config())


def test_missing_weight_names_the_weight(tmp_path):
    layout = keras_layout()
    del layout["batch_normalization_3"]["moving_mean"]
    with pytest.raises(ValueError, match=r"batch_normalization_3/moving_mean missing .*expected shape \(32,\)"):
        keras_import.read_keras_weights(write_h5(tmp_path / "w.h5", layout), ssrnet.get_config())


def test_extra_weighted_layer_is_rejected(tmp_path):
    layout = keras_layout()
    layout["dense_10"] = {"kernel": np.zeros((6, 3), np.float32), "bias": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="does not have: dense_10"):
        keras_import.read_keras_weights(write_h5(tmp_path / "w.h5", layout), ssrnet.get_config())


def test_other_files_are_clear_errors(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file.create_dataset("features/x", data=np.zeros(4))
    with pytest.raises(ValueError, match="layer conv2d_1 missing .*is this an SSR-Net"):
        keras_import.read_keras_weights(tmp_path / "other.h5", ssrnet.get_config())
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        keras_import.read_keras_weights(tmp_path / "text.h5", ssrnet.get_config())
    with pytest.raises(FileNotFoundError):
        keras_import.read_keras_weights(tmp_path / "absent.h5", ssrnet.get_config())


# ---------------------------------------------------------------------------------------------------------------
# The released weights (skipped without the shared reference folder).
# ---------------------------------------------------------------------------------------------------------------
def _ancestors(layers: dict, name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for parent in layers[todo.pop()]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def test_layer_map_follows_the_saved_keras_graph():
    """Each s/x layer reads the stream and tap the map says; the golden outputs cannot tell dense_4 from dense_5
    (their product is 0 on every released weight set), the saved graph can."""
    architecture = REFERENCE / "pretrained" / "morph2" / "ssrnet_3_3_3_64_1.0_1.0.json"
    if not architecture.is_file():
        pytest.skip(f"{architecture} not available")
    graph = {layer["name"]: [node[0] for nodes in layer["inbound_nodes"] for node in nodes]
             for layer in json.loads(architecture.read_text())["config"]["layers"]}
    # Keras layers of each stream's last conv reachable from a stage's fusion layers (tap depth) and stream.
    stream_convs = {"x_stream": [f"conv2d_{i}" for i in range(1, 5)], "s_stream": [f"conv2d_{i}" for i in range(5, 9)]}
    tap_depth = {"stage1": 4, "stage2": 2, "stage3": 1}
    for layer, ((module, name), _) in keras_import.layer_map().items():
        if module not in tap_depth or name in ("fused", "p", "eta", "delta"):
            continue
        ancestors = _ancestors(graph, layer)
        side, other = ("s_stream", "x_stream") if name.startswith("s_") else ("x_stream", "s_stream")
        depth = tap_depth[module]
        assert stream_convs[side][depth - 1] in ancestors, layer
        assert not set(stream_convs[side][depth:]) & ancestors, layer
        assert not set(stream_convs[other]) & ancestors, layer


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name → (config, variables) of each released weight set found, converted once per module."""
    models = {}
    for name in WEIGHT_SETS:
        h5 = REFERENCE / "pretrained" / name / "ssrnet_3_3_3_64_1.0_1.0.h5"
        if h5.is_file():
            models[name] = saved_model.load(keras_import.convert_keras(h5, tmp_path_factory.mktemp(name), ssrnet.get_config()))
    return models


# Every weight set with the default convolutions; one of them with each other `model.conv` (ssr_jax.models.conv).
@pytest.mark.parametrize("name, conv", [(name, "auto") for name in WEIGHT_SETS]
                         + [(WEIGHT_SETS[0], conv) for conv in ("mixed", "patches", "xla", "onednn")])
def test_released_weights_reproduce_keras(converted, name, conv):
    golden = REFERENCE / "golden" / name / "keras_outputs.npz"
    if name not in converted or not golden.is_file():
        pytest.skip(f"reference weights or golden outputs for {name} not available under {REFERENCE}")
    config, variables = converted[name]
    config = config_lib.apply_overrides(config, {"model.conv": conv})
    keras = np.load(golden)
    heads = create_model(config.model).apply(variables, jnp.asarray(keras["inputs_bgr"]), train=False)
    ages = predict_age(config.model, heads, lambda_local=1.0, lambda_d=1.0)
    np.testing.assert_allclose(ages, keras["age"][:, 0], atol=1e-3, rtol=0)
    for k in range(3):
        np.testing.assert_allclose(heads["p"][k], keras[f"p{k + 1}"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(heads["eta"][k], keras[f"eta{k + 1}"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(heads["delta"][k], keras[f"delta{k + 1}"][:, 0], atol=1e-5, rtol=0)
