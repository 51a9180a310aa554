"""Procedural age-labelled faces: the embedded default dataset.

Real age datasets (MORPH2, IMDB-WIKI) cannot be downloaded here, so the framework trains and tests on cartoon faces
drawn with NumPy. Every image is a 64×64×3 (any size ≥ 32) uint8 BGR picture of one head whose integer age in
[0, 100] drives visual cues at several scales:

  coarse  head shape (children: round, large eyes low in the face, features close together; adults: taller head with
          a tapered jaw), hair colour (a per-person base colour turning grey, then white, from a per-person onset
          around 45), hair thickness (babies are nearly bald), receding hairline (per-person baldness), skin
          darkening slightly with age;
  fine    forehead lines, crow's feet and nose-to-mouth folds (appearing after about 30, 33 and 40 and deepening),
          skin texture whose amplitude grows with age, age spots after about 50, drooping eyelids, thinner lips.

Nuisance that carries no age information: pose (translation, scale, rotation), lighting gradient and brightness,
background colour gradient, pixel noise, and identity (skin tone, head width, eye spacing and colour, mouth width,
hair style, fringe, clothing).

Every cue is a monotone function of an *apparent* age, age + N(0, 2²) years, with a per-person onset where it
switches on, so the mapping from image to age is learnable but not exact: a good model gets a mean absolute error of
a few years, not zero, and predicting the mean of uniform ages scores 25. Between about 20 and 30 few cues move,
so that range is the hardest.

What the numbers mean: an MAE on these images says the training pipeline learns coarse-to-fine age cues; it says
nothing about how the same model would do on real faces.

Determinism: example i of a stream depends only on (seed, stream, i) and the arguments, so generating more examples
appends to the same sequence, and train/test splits come from disjoint streams.
"""
from __future__ import annotations

import concurrent.futures
import os

import numpy as np

AGE_DISTRIBUTIONS = ("uniform", "morph")

# Pixels (examples × H × W) rendered together: enough to amortise NumPy's per-call overhead, few enough that the
# [chunk, H, W] float32 temporaries stay in cache.
_CHUNK_PIXELS = 64 * 1024  # 16 examples at 64×64
_THREADS = min(4, os.cpu_count() or 1)

# Per-example random parameters, drawn as one vector per kind; (name, length) pairs.
_NORMAL_PARAMS = (
    ("apparent_age", 1), ("shift", 2), ("rotation", 1), ("head_width", 1), ("head_ratio", 1),
    ("eye_spacing", 1), ("eye_height", 1), ("mouth_width", 1), ("onsets", 5),
)
_UNIFORM_PARAMS = (
    ("scale", 1), ("skin_tone", 1), ("hair_colour", 1), ("hair_volume", 1), ("hair_length", 1), ("fringe", 1),
    ("baldness", 1), ("eye_colour", 1), ("background", 7), ("light", 3), ("pixel_noise", 1), ("clothes", 3),
    ("spots", 16),
)

# Colour anchors (RGB in [0, 1]) that a uniform draw interpolates between.
_SKIN_PALETTE = np.array([[0.98, 0.84, 0.74], [0.85, 0.64, 0.50], [0.62, 0.43, 0.31], [0.40, 0.27, 0.20]])
_HAIR_PALETTE = np.array([[0.06, 0.05, 0.05], [0.20, 0.13, 0.08], [0.40, 0.26, 0.14], [0.55, 0.26, 0.12],
                          [0.82, 0.66, 0.40]])
_IRIS_PALETTE = np.array([[0.22, 0.13, 0.07], [0.40, 0.28, 0.14], [0.25, 0.40, 0.30], [0.25, 0.40, 0.62]])
_EYE_WHITE = np.array([0.95, 0.93, 0.90], np.float32)
_LIP_TINT = np.array([0.85, 0.55, 0.55], np.float32)  # lips: the skin colour, redder and darker

_APPARENT_AGE_SD = 2.0


def generate(num_examples: int, *, seed: int, image_size: int = 64, age_distribution: str = "uniform",
             age_min: int = 0, age_max: int = 100) -> dict[str, np.ndarray]:
    """Draws `num_examples` synthetic faces.

    Returns {"image": uint8 [N, image_size, image_size, 3] in BGR order (channel 0 = blue, as the reference's
    OpenCV pipeline), "age": int32 [N] in [age_min, age_max]}. Deterministic per (seed, arguments); the first k
    examples of generate(n, seed=s) equal generate(k, seed=s).

    age_distribution: "uniform" (integers uniform on [age_min, age_max]) or "morph" (MORPH2-like: skewed, mostly
    16–50, within 16–77), clipped to [age_min, age_max].
    """
    return _generate(num_examples, seed=seed, stream=(), image_size=image_size, age_distribution=age_distribution,
                     age_min=age_min, age_max=age_max)


def train_test_split(num_train: int, num_test: int, *, seed: int, **kwargs) -> tuple[dict, dict]:
    """(train, test) datasets from two disjoint random streams of `seed`; kwargs go to `generate`."""
    train = _generate(num_train, seed=seed, stream=(0,), **kwargs)
    test = _generate(num_test, seed=seed, stream=(1,), **kwargs)
    return train, test


def _generate(num_examples: int, *, seed: int, stream: tuple[int, ...], image_size: int = 64,
              age_distribution: str = "uniform", age_min: int = 0, age_max: int = 100) -> dict[str, np.ndarray]:
    """`generate` on one stream: example i is drawn from SeedSequence(seed, spawn_key=stream + (i,))."""
    _validate(num_examples, seed, image_size, age_distribution, age_min, age_max)
    _keep_freed_memory_mapped()
    images = np.empty((num_examples, image_size, image_size, 3), np.uint8)
    ages = np.empty(num_examples, np.int32)
    chunk = max(1, _CHUNK_PIXELS // image_size ** 2)

    def fill(start: int) -> None:
        stop = min(start + chunk, num_examples)
        ages[start:stop], normal, uniform, texture, grain = _draw_examples(
            range(start, stop), seed, stream, image_size, age_distribution, age_min, age_max)
        params = _split_params(normal, _NORMAL_PARAMS) | _split_params(uniform, _UNIFORM_PARAMS)
        red, green, blue = _render(ages[start:stop], params, texture, grain, image_size)
        for channel, plane in enumerate((blue, green, red)):  # BGR, like the reference's OpenCV pipeline
            images[start:stop, :, :, channel] = _to_uint8(plane)

    # Chunks are independent and NumPy releases the GIL inside array operations, so threads use every core.
    with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(fill, range(0, num_examples, chunk)))
    return {"image": images, "age": ages}


def _keep_freed_memory_mapped() -> None:
    """Stops glibc from returning the renderer's freed temporaries to the OS after every operation.

    By default glibc trims the heap whenever more than 128 KiB at its top is free, so each chunk's temporaries are
    unmapped when freed and page-faulted back in by the next chunk: in a fresh process that doubled the time to
    draw 10,000 images, half of it in the kernel. glibc raises that threshold by itself to twice the size of the
    largest separately mapped block freed so far; allocating and freeing one 16 MiB block (untouched, so it costs
    nothing) triggers that. Other allocators ignore it.
    """
    np.empty(16 * 2**20, np.uint8)  # dropped at once: the free is what counts


def _validate(num_examples, seed, image_size, age_distribution, age_min, age_max) -> None:
    """Raises ValueError with a one-line message naming the bad argument and the fix."""
    if not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
        raise ValueError(f"num_examples must be an integer >= 1, got {num_examples!r}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32 (faces are unreadable below), got {image_size!r}.")
    if age_distribution not in AGE_DISTRIBUTIONS:
        raise ValueError(f"data.age_distribution must be one of {AGE_DISTRIBUTIONS}, got {age_distribution!r}.")
    if not (isinstance(age_min, (int, np.integer)) and isinstance(age_max, (int, np.integer))
            and 0 <= age_min <= age_max <= 100):
        raise ValueError(f"age_min and age_max must be integers with 0 <= age_min <= age_max <= 100, "
                         f"got age_min={age_min!r}, age_max={age_max!r}.")


def _draw_examples(indices, seed, stream, image_size, age_distribution, age_min, age_max):
    """Per-example random draws, each from its own generator so an example never depends on how many are drawn.

    Returns ages int32 [N], normal float32 [N, P_n], uniform float32 [N, P_u], and two float32 [N, H, W] noise
    fields uniform in [0, 1): skin texture and pixel grain.
    """
    num_normal = sum(n for _, n in _NORMAL_PARAMS)
    num_uniform = sum(n for _, n in _UNIFORM_PARAMS)
    ages, normal, uniform, noise = [], [], [], []
    for i in indices:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*stream, i)))
        ages.append(_draw_age(rng, age_distribution, age_min, age_max))
        normal.append(rng.standard_normal(num_normal, dtype=np.float32))
        uniform.append(rng.random(num_uniform, dtype=np.float32))
        noise.append(rng.random((2, image_size, image_size), dtype=np.float32))
    texture, grain = (np.stack([n[k] for n in noise]) for k in range(2))
    return np.array(ages, np.int32), np.stack(normal), np.stack(uniform), texture, grain


def _draw_age(rng: np.random.Generator, age_distribution: str, age_min: int, age_max: int) -> int:
    """One integer age. "morph" is 16 + Gamma(2.2, 8): mode ~26, mean ~34, 90% within 19–56, capped at 77."""
    if age_distribution == "uniform":
        return int(rng.integers(age_min, age_max + 1))
    age = min(16 + round(rng.gamma(2.2, 8.0)), 77)
    return int(np.clip(age, age_min, age_max))


def _split_params(values: np.ndarray, spec) -> dict[str, np.ndarray]:
    """[N, P] → {name: [N] (length 1) or [N, length]} following `spec`."""
    out, i = {}, 0
    for name, length in spec:
        out[name] = values[:, i] if length == 1 else values[:, i:i + length]
        i += length
    return out


def _col(v: np.ndarray) -> np.ndarray:
    """[N] → [N, 1, 1], to broadcast a per-example value over pixels."""
    return v[:, None, None]


def _ramp(v, width):
    """Soft step: 0 for v ≪ 0, 1 for v ≫ 0, linear across `width` (about a pixel, for anti-aliasing)."""
    return np.clip(0.5 + v / width, 0.0, 1.0)


def _ellipse(dx, dy, rx, ry, edge):
    """Anti-aliased filled ellipse. dx, dy: [N, H, W] offsets from the centre; rx, ry: [N] radii → [N, H, W]."""
    q = (dx / _col(rx)) ** 2 + (dy / _col(ry)) ** 2
    # Near the boundary 1 - q ≈ -2d / r for distance d outside, so this ramps over one `edge` without a sqrt.
    return np.clip(0.5 + (1.0 - q) * _col(np.minimum(rx, ry) / (2.0 * edge)), 0.0, 1.0)


def _line(distance, half_width):
    """Thin line profile: 1 on the line, falling linearly to 0 at `half_width`."""
    return np.clip(1.0 - np.abs(distance) / half_width, 0.0, 1.0)


def _thin_line_width(edge):
    """Half-width of wrinkles and other thin lines: a pixel at 64×64, a fixed fraction of the face above."""
    return max(np.float32(0.025), edge)


def _palette(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour along `palette` [K, 3] at t in [0, 1] [N] → [N, 3] float32."""
    knots = np.linspace(0.0, 1.0, len(palette))
    return np.stack([np.interp(t, knots, palette[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def _blend(image, mask, colour):
    """Paints `colour` [N, 3] over `image` (R, G, B planes, each [N, H, W]) in place with opacity `mask` [N, H, W].

    Images are separate colour planes while drawing: NumPy is several times faster when the broadcast mask lines up
    with contiguous pixel rows than with an innermost axis of length 3, and each plane stays a small array."""
    for c, plane in enumerate(image):
        plane += mask * (_col(colour[:, c]) - plane)


def _age_cues(age, p):
    """Cue strengths from the true ages [N] and parameters; every cue reads the same noisy apparent age.

    Returns a dict of [N] float32 arrays, most in [0, 1] (0 = young look, 1 = fully developed).
    """
    # float32 throughout: an int32 or float64 operand anywhere would silently promote every image array to float64.
    a = age.astype(np.float32) + _APPARENT_AGE_SD * p["apparent_age"]
    onset = p["onsets"]  # per-person shifts of when greying and each wrinkle type start
    return {
        # Children's faces change fast and are adult-proportioned by ~18.
        "growth": 1.0 - (1.0 - np.clip(a / 18.0, 0.0, 1.0)) ** 2,
        "hair_cover": np.clip(0.3 + a / 4.0, 0.0, 1.0),
        "grey": 1.0 / (1.0 + np.exp(-(a - 45.0 - 7.0 * onset[:, 0]) / 5.0)),
        "white": np.clip((a - 50.0) / 35.0, 0.0, 1.0),
        "forehead_lines": np.clip((a - 30.0 - 4.0 * onset[:, 1]) / 40.0, 0.0, 1.0),
        "crows_feet": np.clip((a - 33.0 - 4.0 * onset[:, 2]) / 35.0, 0.0, 1.0),
        "folds": np.clip((a - 40.0 - 4.0 * onset[:, 3]) / 35.0, 0.0, 1.0),
        "spots": 0.9 * np.clip((a - 50.0 - 5.0 * onset[:, 4]) / 35.0, 0.0, 1.0),
        "texture": 0.02 + 0.06 * np.clip(a / 90.0, 0.0, 1.0) ** 2,
        "skin_brightness": 1.04 - 0.0022 * np.clip(a, 0.0, 100.0),
        "recession": p["baldness"] ** 3 * np.clip((a - 25.0) / 45.0, 0.0, 1.0),
        "droop": np.clip((a - 50.0) / 40.0, 0.0, 1.0),
        "thin_lips": np.clip((a - 40.0) / 50.0, 0.0, 1.0),
    }


def _layout(cue, p):
    """Face geometry in face units (head centred near the origin, y down, a head about 1 wide) → dict of [N]."""
    g, young = cue["growth"], 1.0 - cue["growth"]
    cy = np.full_like(g, -0.06)
    hw = 0.50 * (1.0 + 0.04 * p["head_width"])
    hh = hw * (1.02 + 0.24 * g + 0.04 * p["head_ratio"])  # children's heads are round, adults' taller
    eye_y = cy + hh * (0.02 + 0.22 * young) + 0.015 * p["eye_height"]  # children's eyes sit below mid-head
    eye_rx = hw * 0.15 * (1.0 + 0.3 * young)  # and are large relative to the head
    eye_mouth = hh * (0.50 - 0.12 * young)  # with the features close together
    brow_y = eye_y - 2.2 * eye_rx * 0.55 - 0.02
    return {
        "cy": cy, "hw": hw, "hh": hh,
        "taper": 0.05 + 0.18 * g,  # the jaw narrows as the face lengthens
        "eye_x": hw * (0.38 + 0.03 * p["eye_spacing"]),
        "eye_y": eye_y, "eye_rx": eye_rx, "eye_ry": eye_rx * 0.55 * (1.0 - 0.3 * cue["droop"]),
        "brow_y": brow_y,
        "nose_y": eye_y + 0.6 * eye_mouth,
        "mouth_y": eye_y + eye_mouth,
        "mouth_rx": hw * 0.30 * (1.0 + 0.08 * p["mouth_width"]) * (1.0 - 0.15 * young),
        "mouth_ry": 0.04 * (1.0 + 0.3 * young) * (1.0 - 0.4 * cue["thin_lips"]),
        "hair_volume": (0.03 + 0.12 * p["hair_volume"]) * (0.3 + 0.7 * g) * (1.0 - 0.7 * cue["recession"]),
        "hair_bottom": cy + hh * (1.1 * p["hair_length"] - 0.1),
        # Hairline: recedes with age for the balding; a fringe lowers it for some.
        "hairline_y": cy - hh * (0.58 + 0.35 * cue["recession"] - 0.2 * p["fringe"] * (1.0 - cue["recession"])),
    }


def _render(age: np.ndarray, p: dict, texture: np.ndarray, grain: np.ndarray, size: int) -> list[np.ndarray]:
    """Draws one chunk. age: int [N]; p: parameter dict of [N] or [N, k]; texture, grain: noise [N, H, W] in [0, 1)
    → [R, G, B] planes, float32 [N, H, W] each, roughly in [0, 1] (clipped later)."""
    cue, edge = _age_cues(age, p), np.float32(2.0 / size)  # edge: one pixel in image coordinates
    lay = _layout(cue, p)
    x, y = _pixel_grid(size)
    fx, fy = _face_coordinates(x, y, p)
    ax = np.abs(fx)  # left-right symmetric features are drawn once, mirrored through |x|

    image = _background(x, y, p)
    skin = _palette(_SKIN_PALETTE, p["skin_tone"]) * cue["skin_brightness"][:, None]
    hair = _hair_colour(cue, p)
    clothes = 0.15 + 0.75 * p["clothes"]

    shoulders = _ellipse(fx, fy - _col(lay["cy"] + lay["hh"] + 0.5), 2.2 * lay["hw"], np.full_like(lay["hw"], 0.45),
                         edge)
    _blend(image, shoulders, clothes)
    neck = _ramp(_col(0.32 * lay["hw"]) - ax, edge) * _ramp(fy - _col(lay["cy"] + 0.5 * lay["hh"]), edge)
    _blend(image, neck, 0.8 * skin)
    head, roundness = _head(fx, fy, lay, edge)
    _blend(image, head, skin)
    # Hair behind the head plus the part covering the scalp, painted in one pass so no seam shows at the outline.
    behind = _ellipse(fx, fy - _col(lay["cy"] - 0.5 * lay["hair_volume"]), lay["hw"] + lay["hair_volume"],
                      lay["hh"] + lay["hair_volume"], edge) * _ramp(_col(lay["hair_bottom"]) - fy, edge)
    scalp = head * _ramp(_col(lay["hairline_y"]) + 0.45 * fx * fx / _col(lay["hw"]) - fy, edge)
    _blend(image, (behind - head * behind + scalp) * _col(cue["hair_cover"]), hair)
    bare_skin = head - scalp * _col(cue["hair_cover"])

    _draw_eyes(image, ax, fy, lay, p, edge)
    brow = _line(fy - _col(lay["brow_y"]) + 0.15 * (ax - _col(lay["eye_x"])), 0.03) \
        * _ramp(_col(0.6 * lay["eye_rx"]) - np.abs(ax - _col(lay["eye_x"])), edge)
    _blend(image, brow * 0.9, 0.8 * hair)
    lips = _ellipse(fx, fy - _col(lay["mouth_y"]), lay["mouth_rx"], lay["mouth_ry"], edge)
    _blend(image, lips, skin * _LIP_TINT)

    # Everything that only darkens or lightens (wrinkles, shading, texture, light) is one multiplicative map.
    darkness = 0.25 * roundness * bare_skin  # the face darkens towards its outline, so it reads as round
    darkness += _wrinkles(ax, fy, lay, cue, edge) * bare_skin
    darkness += _nose_and_mouth_lines(fx, ax, fy, lay, cue, edge)
    darkness += _age_spots(fx, fy, lay, cue, p) * bare_skin
    darkness += (2.0 * texture - 1.0) * _col(cue["texture"]) * bare_skin
    shade = (1.0 - np.clip(darkness, -0.5, 0.85)) * _lighting(x, y, p)  # overlapping lines must not go black
    grain = (grain - 0.5) * _col(0.02 + 0.08 * p["pixel_noise"])
    for plane in image:
        plane *= shade
        plane += grain
    return image


def _pixel_grid(size: int):
    """Pixel centres in image coordinates [-1, 1], y down: x [1, 1, W], y [1, H, 1]."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0)
    return c[None, None, :], c[None, :, None]


def _face_coordinates(x, y, p):
    """Image → face coordinates under each example's pose (shift ±0.07, scale 0.9–1.15, rotation ±6°): [N, H, W]."""
    scale = 0.9 + 0.25 * p["scale"]
    angle = 0.1 * p["rotation"]
    cos, sin = _col(np.cos(angle) / scale), _col(np.sin(angle) / scale)
    dx = x - _col(0.07 * p["shift"][:, 0])
    dy = y - _col(0.07 * p["shift"][:, 1])
    return cos * dx + sin * dy, cos * dy - sin * dx


def _background(x, y, p):
    """Linear gradient between two random colours in a random direction: [R, G, B] planes, each [N, H, W]."""
    b = p["background"]
    direction = 2.0 * np.pi * b[:, 6]
    t = np.clip(0.5 + 0.6 * (_col(np.cos(direction)) * x + _col(np.sin(direction)) * y), 0.0, 1.0)
    start, stop = 0.1 + 0.8 * b[:, :3], 0.1 + 0.8 * b[:, 3:6]
    return [_col(start[:, c]) + t * _col(stop[:, c] - start[:, c]) for c in range(3)]


def _hair_colour(cue, p):
    """Per-person base colour greying towards a grey that whitens with age: [N, 3]."""
    base = _palette(_HAIR_PALETTE, p["hair_colour"])
    grey = (0.55 + 0.4 * cue["white"])[:, None]
    return base + cue["grey"][:, None] * (grey - base)


def _head(fx, fy, lay, edge):
    """Egg-shaped head, narrower towards the chin. Returns (mask, roundness), both [N, H, W]; roundness grows from
    0 at the centre to 1 at the outline."""
    v = (fy - _col(lay["cy"])) / _col(lay["hh"])
    half_width = _col(lay["hw"]) * (1.0 - _col(lay["taper"]) * np.clip(v, 0.0, 1.0))
    q = (fx / half_width) ** 2 + v * v
    mask = np.clip(0.5 + (1.0 - q) * _col(lay["hw"] / (2.0 * edge)), 0.0, 1.0)
    return mask, np.minimum(q, 1.0)


def _draw_eyes(image, ax, fy, lay, p, edge):
    """Whites and irises of both eyes (mirrored), painted into `image`."""
    dx, dy = ax - _col(lay["eye_x"]), fy - _col(lay["eye_y"])
    white = _ellipse(dx, dy, lay["eye_rx"], lay["eye_ry"], edge)
    _blend(image, white, np.broadcast_to(_EYE_WHITE, (len(ax), 3)))
    iris = white * _ellipse(dx, dy, 0.95 * lay["eye_ry"], 0.95 * lay["eye_ry"], edge)
    _blend(image, iris, _palette(_IRIS_PALETTE, p["eye_colour"]))


def _wrinkles(ax, fy, lay, cue, edge):
    """Darkening [N, H, W] of forehead lines (up to four, added one by one as they deepen) and crow's feet (three
    rays from each outer eye corner)."""
    half_width = _thin_line_width(edge)
    hw = _col(lay["hw"])
    # Forehead lines curve down towards the temples and fade out at their ends.
    across = _ramp(0.5 * hw - ax, 0.15 * hw)
    arc = fy - _col(lay["brow_y"]) - 0.25 * ax * ax / hw
    amount = cue["forehead_lines"]
    darkness = np.zeros_like(arc)
    for k in range(4):
        strength = 0.35 * np.clip(4.0 * amount - k, 0.0, 1.0)
        darkness += _col(strength) * _line(arc + _col(lay["hh"] * (0.13 + 0.065 * k)), half_width)
    darkness *= across

    corner_x = ax - _col(lay["eye_x"] + 1.1 * lay["eye_rx"])
    corner_y = fy - _col(lay["eye_y"])
    length = _col(lay["hw"] * 0.25 * (0.6 + 0.4 * cue["crows_feet"]))
    along = _ramp(corner_x - 0.25 * length, edge) * _ramp(length - corner_x, edge)  # rays meet short of the corner
    for slope in (-0.6, 0.0, 0.6):
        ray = _line((corner_y - slope * corner_x) / (1.0 + slope * slope) ** 0.5, half_width)
        darkness += _col(0.4 * cue["crows_feet"]) * ray * along
    return darkness


def _nose_and_mouth_lines(fx, ax, fy, lay, cue, edge):
    """Darkening [N, H, W]: the nose's side shadow and nostrils, the line between the lips, and the nose-to-mouth
    folds that deepen with age."""
    half_width = _thin_line_width(edge)
    hw = _col(lay["hw"])
    nose_top = lay["eye_y"] + 0.3 * (lay["nose_y"] - lay["eye_y"])
    side = _line(fx - 0.06 * hw, half_width) * _ramp(fy - _col(nose_top), edge) \
        * _ramp(_col(lay["nose_y"]) - fy, edge)
    nostrils = _ellipse(ax - 0.08 * hw, fy - _col(lay["nose_y"]), np.full_like(lay["hw"], 0.035),
                        np.full_like(lay["hw"], 0.02), edge)
    mouth_line = _line(fy - _col(lay["mouth_y"]), half_width) * _ramp(_col(0.9 * lay["mouth_rx"]) - ax, edge)
    fold = _line(_segment_distance(ax, fy, 0.2 * lay["hw"], lay["nose_y"] - 0.02,
                                   lay["mouth_rx"] + 0.05, lay["mouth_y"] + 0.04), half_width)
    return 0.2 * side + 0.4 * nostrils + 0.45 * mouth_line + _col(0.4 * cue["folds"]) * fold


def _segment_distance(px, py, x0, y0, x1, y1):
    """Distance from points px, py [N, H, W] to the segment from (x0, y0) to (x1, y1), endpoints [N]."""
    sx, sy = x1 - x0, y1 - y0
    dx, dy = px - _col(x0), py - _col(y0)
    t = np.clip((dx * _col(sx) + dy * _col(sy)) / _col(sx * sx + sy * sy), 0.0, 1.0)
    return np.sqrt((dx - t * _col(sx)) ** 2 + (dy - t * _col(sy)) ** 2)


def _age_spots(fx, fy, lay, cue, p):
    """Darkening [N, H, W] of up to four soft brown spots on the face, each present with probability `spots`."""
    s = p["spots"]
    darkness = np.zeros(np.broadcast_shapes(fx.shape, fy.shape), np.float32)
    for k in range(4):
        present = (s[:, 12 + k] < cue["spots"]).astype(np.float32)
        if not present.any():  # the usual case for a chunk of young faces; skip the full-image arithmetic
            continue
        cx = (2.0 * s[:, k] - 1.0) * 0.6 * lay["hw"]
        cy = lay["brow_y"] + (lay["mouth_y"] - lay["brow_y"] + 0.1) * s[:, 4 + k] - 0.15
        r2 = (0.02 + 0.025 * s[:, 8 + k]) ** 2
        blob = np.clip(1.0 - ((fx - _col(cx)) ** 2 + (fy - _col(cy)) ** 2) / _col(r2), 0.0, 1.0)
        darkness += _col(0.35 * present) * blob
    return darkness


def _lighting(x, y, p):
    """Overall brightness 0.7–1.15 times a linear gradient of up to ±35% in a random direction: [N, H, W]."""
    light = p["light"]
    direction = 2.0 * np.pi * light[:, 0]
    strength = 0.35 * light[:, 1]
    brightness = 0.7 + 0.45 * light[:, 2]
    gradient = _col(np.cos(direction) * strength) * x + _col(np.sin(direction) * strength) * y
    return _col(brightness) * (1.0 + gradient)


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    """Float intensities in [0, 1] → uint8, rounding and clipping."""
    return np.clip(plane * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
