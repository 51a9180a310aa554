"""The embedded synthetic faces (ssr_jax.data.synthetic) as a prepared dataset, so every data command (prepare,
info, export-npz, loading) works without any download. The default config draws the same train and test images as
the default `data.name = "synthetic"` config (10,000 / 2,500, seed 0, uniform ages)."""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from ssr_jax.data import synthetic
from ssr_jax.data.builders import common
from ssr_jax.data.builders.base import FaceBuilder


@dataclasses.dataclass(eq=False)
class SyntheticFacesConfig(tfds.core.BuilderConfig):
    """Arguments of `synthetic.train_test_split`; a config with another name prepares into its own directory."""

    num_train: int = 10_000
    num_test: int = 2_500
    seed: int = 0
    age_distribution: str = "uniform"


class SyntheticFaces(FaceBuilder):
    """Procedural faces with known ages; no manual files."""

    name = "synthetic_faces"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [SyntheticFacesConfig(name="default", description="10,000 train / 2,500 test, seed 0, uniform "
                                                                          "ages: the default synthetic config.")]
    DESCRIPTION = "Synthetic cartoon faces from ssr_jax.data.synthetic, 64×64 BGR, age 0–100. No gender."
    HAS_GENDER = False

    def _sources(self, manual_dir) -> None:
        return None

    def _examples_by_split(self) -> dict:
        config = self.builder_config
        splits = synthetic.train_test_split(config.num_train, config.num_test, seed=config.seed,
                                            image_size=common.IMAGE_SIZE, age_distribution=config.age_distribution)
        return {split: self._generate_examples(split, data) for split, data in zip(("train", "test"), splits)}

    def _generate_examples(self, split: str, data: dict):
        """Example i of a split is example i of that split's synthetic stream (its key and `file`)."""
        for i, (image, age) in enumerate(zip(data["image"], data["age"])):
            yield i, self._example(image, int(age), None, f"{split}/{i}")
