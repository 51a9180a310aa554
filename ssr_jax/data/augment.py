"""Training augmentation of the Keras reference as one jitted, key-driven affine resample per image.

What the reference does (shamangary/SSR-Net `training_and_testing/TYY_generators.py`, `augment_data`), for every
uint8 [H, W, 3] image of every training batch, in this order:

  1. p = 0.5   horizontal flip, `image[:, ::-1]`;
  2. p = 0.25  `random_rotation(x, 20)`: angle uniform in ±20°;
  3. p = 0.25  `random_shear(x, 0.2)`: shear angle uniform in ±0.2 rad;
  4. p = 0.25  `random_shift(x, 0.2, 0.2)`: ±0.2·H rows and ±0.2·W columns, each uniform;
  5. p = 0.25  `random_zoom(x, [0.8, 1.2])`: row and column factors drawn independently, uniform in [0.8, 1.2];

each step an independent coin (`np.random.random() > 0.75`) and each one `scipy.ndimage.affine_transform` call
with order=0 (nearest neighbour) and mode='nearest' (clamp to the edge), written back into the uint8 batch
(`tf.contrib.keras.preprocessing.image`, Keras 2.0).

Coordinate convention (the reference's, kept here). A matrix is a 3×3 homogeneous map from an OUTPUT pixel to the
INPUT pixel it samples, in array index coordinates (row, col): pixel centres sit at integer coordinates, row 0 is
the top row. So `out[r, c] = image[round(M @ (r, c, 1))]`, and the content moves by the INVERSE of M: a matrix that
adds +1 to the row moves the picture up one row. Keras names the row axis "x" and the column axis "y" (`tx` shifts
rows, `zx` zooms rows); in these matrices:
  rotation  [[cos θ, −sin θ], [sin θ, cos θ]]   θ > 0 turns the picture clockwise on screen (θ = 90° is
            `np.rot90(image, k=-1)` for a square image);
  shear     [[1, −sin s], [0, cos s]]           Keras' shear, rows slide in proportion to the column;
  shift     + (t_row, t_col)                     out[r, c] = image[r + t_row, c + t_col];
  zoom      diag(z_row, z_col)                   z > 1 samples a larger area: the picture shrinks;
  flip      col ↦ −col                           about the centre: col ↦ (W − 1) − col.
Rotation, shear, zoom and flip act about the image centre (`about_center`), shift needs no centring.

Where this differs from the reference, and why:
  * One resample instead of up to five. Sequential resamples compose as out(p) = in(M_flip M_rot M_shear M_shift
    M_zoom p) (each later step samples the result of the earlier ones, so the first step's matrix is leftmost); we
    build that product and sample once, which avoids compounding four nearest-neighbour roundings and four edge
    clamps. Where an intermediate step pushed content off the edge, the reference replicates the edge of the
    *intermediate* image (e.g. the edge stripe a shift brings in is then zoomed); here the edge of the original image
    is replicated once, at the end.
  * The exact centre ((H − 1)/2, (W − 1)/2). Keras 2.0's `transform_matrix_offset_center` uses
    o = size/2 + 0.5 = (size + 1)/2, one pixel below and right of the true centre (later Keras versions changed it
    to size/2 − 0.5); with the exact centre a flip is exactly `image[:, ::-1]` and a 90° rotation exactly
    `np.rot90`. The difference is a sub-pixel translation (≤ 0.35 px at 20°, 0.2 px at zoom 1.2).
  * Rounding: a source coordinate x is read at floor(x + 0.5) (halves round up), then clamped to the image.
  * Random numbers come from a JAX key, not NumPy's global state: the same key gives the same augmentation.
Pixels are gathered, never computed, so any dtype passes through unchanged (uint8 in, uint8 out).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

# 3×3 products and the coordinate map are few flops but must be exact to float32: on GPU/TPU the default matmul
# precision may round operands to TF32/bf16, which moves sampled coordinates by a fraction of a pixel.
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges; frozen and hashable so jitted functions take it as a static argument.

    flip          horizontal flip with probability 0.5 (the reference's fixed coin), or never;
    rotation_deg  rotation angle uniform in ±rotation_deg degrees (0: none);
    shear         shear angle uniform in ±shear radians (0: none);
    shift         row and column shifts uniform in ±shift·H and ±shift·W pixels (0: none);
    zoom          (low, high): row and column zoom factors drawn independently, uniform in [low, high];
    probability   each of rotation, shear, shift and zoom is applied independently with this probability.
    """

    flip: bool = True
    rotation_deg: float = 20.0
    shear: float = 0.2
    shift: float = 0.2
    zoom: tuple[float, float] = (0.8, 1.2)
    probability: float = 0.25

    def __post_init__(self):
        # A list (from a ConfigDict or a command line) would make the config unhashable, so not usable as static.
        zoom = tuple(float(z) for z in self.zoom)
        object.__setattr__(self, "zoom", zoom)
        if len(zoom) != 2 or not 0 < zoom[0] <= zoom[1]:
            raise ValueError(f"augment.zoom={self.zoom!r}: need (low, high) with 0 < low <= high, e.g. (0.8, 1.2)")
        for name in ("rotation_deg", "shear", "shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name}={getattr(self, name)!r}: a range half-width, must be >= 0")
        if not 0 <= self.probability <= 1:
            raise ValueError(f"augment.probability={self.probability!r}: must be in [0, 1]")


def from_config(cfg) -> AugmentConfig | None:
    """The `data.augment` ConfigDict section (fields: enabled, flip, rotation_deg, shear, shift, zoom, probability)
    as an `AugmentConfig`, or None when `enabled` is False or the section is absent (configs recorded before
    augmentation existed trained without it)."""
    if cfg is None or not cfg.enabled:
        return None
    return AugmentConfig(flip=bool(cfg.flip), rotation_deg=float(cfg.rotation_deg), shear=float(cfg.shear),
                         shift=float(cfg.shift), zoom=tuple(cfg.zoom), probability=float(cfg.probability))


# --- Matrices: 3×3 float32, output (row, col, 1) -> input (row, col, 1), about the origin unless stated. ---------

def rotation_matrix(angle) -> jax.Array:
    """Keras' rotation by `angle` radians (scalar) → [3, 3]; about the origin, centre it with `about_center`."""
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], jnp.float32)


def shear_matrix(angle) -> jax.Array:
    """Keras' shear by `angle` radians (scalar) → [3, 3]: input row = row − sin(angle)·col, input col =
    cos(angle)·col."""
    return jnp.array([[1.0, -jnp.sin(angle), 0.0], [0.0, jnp.cos(angle), 0.0], [0.0, 0.0, 1.0]], jnp.float32)


def translation_matrix(offset) -> jax.Array:
    """Sample `offset` = (rows, cols) pixels away ([2]) → [3, 3]; the picture moves by −offset."""
    return jnp.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]], [0.0, 0.0, 1.0]], jnp.float32)


def zoom_matrix(factors) -> jax.Array:
    """Scale coordinates by `factors` = (row, col) ([2]) → [3, 3]; factors > 1 shrink the picture."""
    return jnp.array([[factors[0], 0.0, 0.0], [0.0, factors[1], 0.0], [0.0, 0.0, 1.0]], jnp.float32)


def flip_matrix() -> jax.Array:
    """Mirror the column coordinate → [3, 3]; about the centre it is `image[:, ::-1]`."""
    return jnp.diag(jnp.array([1.0, -1.0, 1.0], jnp.float32))


def compose(*matrices) -> jax.Array:
    """Product m_0 @ m_1 @ … of [3, 3] matrices: sampling with it equals resampling with the last one first."""
    return functools.reduce(lambda a, b: jnp.matmul(a, b, precision=_HIGHEST), matrices)


def about_center(matrix, image_size: tuple[int, int]) -> jax.Array:
    """`matrix` [3, 3] acting about the centre ((H − 1)/2, (W − 1)/2) of an image of `image_size` (H, W) instead of
    about pixel (0, 0): shift the centre to the origin, apply, shift back."""
    center = ((image_size[0] - 1) / 2, (image_size[1] - 1) / 2)
    to_origin = translation_matrix((-center[0], -center[1]))
    back = translation_matrix(center)
    return compose(back, matrix, to_origin)


# --- Sampling ----------------------------------------------------------------------------------------------------

def sample_parameters(key, config: AugmentConfig) -> dict[str, jax.Array]:
    """Draw one image's augmentation: booleans for whether each part is applied, and the parameters of each part
    (drawn whether or not it is applied, so the shapes are fixed).

    Returns {"flip", "rotate", "shear", "shift", "zoom": bool [], "angle": float32 [] radians,
    "shear_angle": float32 [] radians, "shift_fraction": float32 [2] (rows, cols) as fractions of (H, W),
    "zoom_factors": float32 [2] (rows, cols)}.
    """
    gate_key, angle_key, shear_key, shift_key, zoom_key = jax.random.split(key, 5)
    p = config.probability
    # flip=False gives the flip probability 0 rather than a Python branch, so the key use is the same either way.
    gates = jax.random.uniform(gate_key, (5,)) < jnp.array([0.5 * config.flip, p, p, p, p], jnp.float32)
    max_angle = math.radians(config.rotation_deg)
    return {
        "flip": gates[0],
        "rotate": gates[1],
        "shear": gates[2],
        "shift": gates[3],
        "zoom": gates[4],
        "angle": jax.random.uniform(angle_key, (), jnp.float32, -max_angle, max_angle),
        "shear_angle": jax.random.uniform(shear_key, (), jnp.float32, -config.shear, config.shear),
        "shift_fraction": jax.random.uniform(shift_key, (2,), jnp.float32, -config.shift, config.shift),
        "zoom_factors": jax.random.uniform(zoom_key, (2,), jnp.float32, *config.zoom),
    }


def transform_from_parameters(params: dict[str, jax.Array], image_size: tuple[int, int]) -> jax.Array:
    """The single [3, 3] output → input matrix of `sample_parameters`' draw for an image of `image_size` (H, W).

    Unselected parts become the identity (jnp.where, no Python branches), and the parts compose in the reference's
    order flip, rotation, shear, shift, zoom (see the module docstring). Centring the product once equals centring
    each part: conjugation by the centre shift distributes over products and leaves the shift unchanged.
    """
    identity = jnp.eye(3, dtype=jnp.float32)
    size = jnp.array(image_size, jnp.float32)
    parts = (
        (params["flip"], flip_matrix()),
        (params["rotate"], rotation_matrix(params["angle"])),
        (params["shear"], shear_matrix(params["shear_angle"])),
        (params["shift"], translation_matrix(params["shift_fraction"] * size)),
        (params["zoom"], zoom_matrix(params["zoom_factors"])),
    )
    return about_center(compose(*(jnp.where(on, matrix, identity) for on, matrix in parts)), image_size)


def sample_transform(key, config: AugmentConfig, image_size: tuple[int, int]) -> jax.Array:
    """A random [3, 3] output → input matrix (homogeneous (row, col, 1)) for an image of `image_size` (H, W)."""
    return transform_from_parameters(sample_parameters(key, config), image_size)


# --- Resampling --------------------------------------------------------------------------------------------------

def apply_affine(image, matrix) -> jax.Array:
    """Resample `image` [H, W, ...] once through `matrix` [3, 3] (output → input (row, col, 1)): nearest neighbour
    (source coordinates rounded half up) with clamp-to-edge fill, Keras' order=0, fill_mode='nearest'. Every output
    pixel is a copy of an input pixel, so dtype and values pass through; returns the same shape and dtype."""
    height, width = image.shape[:2]
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                              indexing="ij")
    # Elementwise rather than a matmul, for exact float32 on every backend (see _HIGHEST).
    src_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2]
    src_cols = matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2]
    # Clamp before the integer cast so a far-off coordinate cannot overflow int32.
    src_rows = jnp.clip(jnp.floor(src_rows + 0.5), 0, height - 1).astype(jnp.int32)
    src_cols = jnp.clip(jnp.floor(src_cols + 0.5), 0, width - 1).astype(jnp.int32)
    return image[src_rows, src_cols]


@functools.partial(jax.jit, static_argnames="config")
def augment_image(key, image, config: AugmentConfig) -> jax.Array:
    """One random augmentation of `image` [H, W, C] (uint8 in the pipeline; any dtype) → same shape and dtype."""
    return apply_affine(image, sample_transform(key, config, image.shape[:2]))


@functools.partial(jax.jit, static_argnames="config")
def augment_batch(key, images, config: AugmentConfig) -> jax.Array:
    """Augment each of `images` [B, H, W, C] independently, image i with `jax.random.split(key, B)[i]` → [B, H, W, C].
    """
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, image: augment_image(k, image, config))(keys, images)
