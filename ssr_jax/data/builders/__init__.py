"""TFDS builders for the face-age datasets, prepared offline from files the user puts in a manual directory and read
back without TensorFlow (array_record files, `builder.as_data_source`).

Every builder stores `image` (uint8 64×64×3, BGR like the reference's cv2 pipeline), `age` (int32, 0–100), `file`
(the source of the example) and, where the source has it, `gender` (int32: 0 male, 1 female). A dataset name may
carry a config after a slash: `morph2/subject`.
"""
from __future__ import annotations

import os

from ssr_jax.data.builders.base import FaceBuilder, ManualFilesError
from ssr_jax.data.builders.imdb_wiki import Imdb, Wiki
from ssr_jax.data.builders.megaage_asian import MegaageAsian
from ssr_jax.data.builders.morph2 import Morph2
from ssr_jax.data.builders.synthetic_faces import SyntheticFaces, SyntheticFacesConfig
from ssr_jax.data.builders.utkface import Utkface

BUILDERS: dict[str, type[FaceBuilder]] = {
    "morph2": Morph2,
    "imdb": Imdb,
    "wiki": Wiki,
    "megaage_asian": MegaageAsian,
    "utkface": Utkface,
    "synthetic_faces": SyntheticFaces,
}

__all__ = ["BUILDERS", "FaceBuilder", "ManualFilesError", "SyntheticFacesConfig", "get_builder"]


def get_builder(name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None,
                config=None, *, strict: bool = False) -> FaceBuilder:
    """The builder for `name` ("morph2", or "morph2/subject" to pick a config), reading and writing under
    `data_dir` (always explicit: TFDS's own default is read once at import). `config` is a config name or a
    BuilderConfig object (e.g. SyntheticFacesConfig); `manual_dir` and `strict` matter only when preparing."""
    base, _, named_config = name.partition("/")
    if base not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(BUILDERS)} "
                         "(a config may follow a slash, e.g. morph2/subject)")
    if named_config and config is not None and config != named_config:
        raise ValueError(f"dataset {name!r} names config {named_config!r} but config={config!r} was also given")
    config = config if config is not None else (named_config or None)
    builder_cls = BUILDERS[base]
    if isinstance(config, str):
        valid = [c.name for c in builder_cls.BUILDER_CONFIGS]
        if config not in valid:
            choices = f"choose one of {', '.join(valid)}" if valid else "it has no configs"
            raise ValueError(f"dataset {base!r} has no config {config!r}: {choices}")
    return builder_cls(data_dir=os.fspath(data_dir), config=config, manual_dir=manual_dir, strict=strict)
