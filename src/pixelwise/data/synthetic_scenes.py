"""The synthetic scenes themselves: object classes, the settings, and rendering one image.

Each image is a smooth, two-colour textured background with a few objects on it; see
:mod:`pixelwise.data.synthetic` for the dataset written from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pixelwise.data.spec import IGNORE_LABEL

# Texture periods below are in pixels of a 128-pixel image and scale with the image.
REFERENCE_SIZE = 128


@dataclass(frozen=True)
class ObjectClass:
    """How one object class looks: its shape family and its texture."""

    name: str
    shape: str        # ellipse | box | triangle | star | ring
    texture: str      # dots | stripes | checks | speckle
    period_px: float  # texture period at REFERENCE_SIZE pixels
    angle_deg: float  # texture orientation in the image (0: horizontal stripes)


OBJECT_CLASSES = (
    ObjectClass("ball", "ellipse", "dots", period_px=10.0, angle_deg=0.0),
    ObjectClass("block", "box", "stripes", period_px=9.0, angle_deg=0.0),
    ObjectClass("cone", "triangle", "stripes", period_px=5.0, angle_deg=60.0),
    ObjectClass("star", "star", "checks", period_px=8.0, angle_deg=45.0),
    ObjectClass("ring", "ring", "speckle", period_px=3.0, angle_deg=0.0),
)
MAX_OBJECT_CLASSES = len(OBJECT_CLASSES)


@dataclass(frozen=True)
class SyntheticConfig:
    """Every setting that decides the generated files; recorded in pixelwise_synthetic.json.

    Args:
        num_images: images in all (train + val).
        height, width: image size in pixels.
        seed: the random seed; image ``i`` is drawn from ``(seed, i)``.
        val_fraction: share of the images listed in val.txt (rounded, at least one each).
        num_object_classes: how many of ball, block, cone, star, ring to use (1..5);
            background is class 0 in addition.
        min_objects, max_objects: objects per image, drawn uniformly in this range.
        min_scale, max_scale: an object's size as a fraction of the shorter image side:
            the diameter of the disc with the object's area (before occlusion and cropping).
        color_overlap: 0 gives each class its own hue sector (colour alone separates the
            object classes); 0.5 makes each class's hue range reach half-way into its
            neighbours'; 1 makes it span three sectors.
        texture_contrast: how much darker the second tone of an object's texture is (0..1).
        noise_std: standard deviation of Gaussian pixel noise, in units of full scale.
        boundary_width: width in pixels of the ignore band along visible outlines (0: none).
        jpeg_quality: quality of the saved JPEG images.
    """

    num_images: int = 300
    height: int = 128
    width: int = 128
    seed: int = 0
    val_fraction: float = 1 / 3
    num_object_classes: int = MAX_OBJECT_CLASSES
    min_objects: int = 2
    max_objects: int = 4
    min_scale: float = 0.2
    max_scale: float = 0.5
    color_overlap: float = 0.5
    texture_contrast: float = 0.6
    noise_std: float = 0.03
    boundary_width: int = 2
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        problems = []
        if self.num_images < 2:
            problems.append(f"num_images must be at least 2 (one train, one val), "
                            f"got {self.num_images}")
        if self.height < 16 or self.width < 16:
            problems.append(f"images must be at least 16x16 pixels, got {self.height}x{self.width}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"val_fraction must lie strictly between 0 and 1, "
                            f"got {self.val_fraction}")
        if not 1 <= self.num_object_classes <= MAX_OBJECT_CLASSES:
            problems.append(f"num_object_classes must be 1..{MAX_OBJECT_CLASSES}, "
                            f"got {self.num_object_classes}")
        if not 1 <= self.min_objects <= self.max_objects:
            problems.append(f"objects per image need 1 <= min_objects <= max_objects, got "
                            f"{self.min_objects}..{self.max_objects}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            problems.append(f"object scale needs 0 < min_scale <= max_scale <= 1, got "
                            f"{self.min_scale}..{self.max_scale}")
        if not 0 <= self.color_overlap <= 1:
            problems.append(f"color_overlap must be in 0..1, got {self.color_overlap}")
        if not 0 <= self.texture_contrast <= 1:
            problems.append(f"texture_contrast must be in 0..1, got {self.texture_contrast}")
        if self.noise_std < 0:
            problems.append(f"noise_std must be >= 0, got {self.noise_std}")
        if not 0 <= self.boundary_width <= 16:
            problems.append(f"boundary_width must be 0..16 pixels, got {self.boundary_width}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be 1..100, got {self.jpeg_quality}")
        if problems:
            raise ValueError("synthetic dataset settings: " + "; ".join(problems))

    @property
    def num_val(self) -> int:
        return min(max(round(self.num_images * self.val_fraction), 1), self.num_images - 1)

    @property
    def num_train(self) -> int:
        return self.num_images - self.num_val

    def to_dict(self) -> dict:
        return asdict(self)


def render_example(config: SyntheticConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of the dataset ``config`` describes, in memory.

    Returns (image uint8 [H, W, 3], label_map uint8 [H, W]); the label map holds class
    indices (0 background, 1.. objects) and 255 on the boundary bands.
    """
    rng = np.random.default_rng([config.seed, index])
    height, width = config.height, config.width
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    # Texture periods and noise grain scale with the image, so a resized image looks alike.
    pixel_scale = min(height, width) / REFERENCE_SIZE
    image = _background(rng, rows, cols, pixel_scale)
    label_map = np.zeros((height, width), dtype=np.uint8)
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    class_indices = rng.choice(config.num_object_classes, size=num_objects,
                               replace=num_objects > config.num_object_classes)
    for class_index in class_indices:
        object_class = OBJECT_CLASSES[int(class_index)]
        mask = _shape_mask(rng, object_class.shape, rows, cols, config)
        tones = _object_tones(rng, int(class_index), config)
        pattern = _texture(rng, object_class, rows, cols, pixel_scale)
        object_rgb = tones[0] * (1 - pattern[..., None]) + tones[1] * pattern[..., None]
        image[mask] = object_rgb[mask]
        label_map[mask] = class_index + 1
    if config.noise_std > 0:
        image = image + rng.normal(0.0, config.noise_std, size=image.shape).astype(np.float32)
    image_uint8 = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    label_map[boundary_band(label_map, config.boundary_width)] = IGNORE_LABEL
    return image_uint8, label_map


def boundary_band(label_map: np.ndarray, width: int) -> np.ndarray:
    """Boolean [H, W]: pixels within a band ``width`` pixels wide along every label change.

    A pixel is in the band when the (width+1) x (width+1) window around it holds more than
    one label, so the band straddles each outline (width // 2 pixels on one side, the rest
    on the other). The image border is not an outline.
    """
    if width <= 0:
        return np.zeros(label_map.shape, dtype=bool)
    before, after = width // 2, width - width // 2
    padded = np.pad(label_map, ((before, after), (before, after)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (width + 1, width + 1))
    return windows.max(axis=(-2, -1)) != windows.min(axis=(-2, -1))


def _background(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray,
                pixel_scale: float) -> np.ndarray:
    """A smooth blend of two random colours (any hue) along low-frequency waves: float [H, W, 3]."""
    field = np.zeros_like(rows)
    for _ in range(3):
        period = rng.uniform(40, 120) * pixel_scale
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / period + phase)
    field = (field / 3 + 1) / 2  # 0..1
    colors = _hsv_to_rgb(rng.uniform(0, 1, size=2), rng.uniform(0.1, 0.8, size=2),
                         rng.uniform(0.35, 0.95, size=2))
    return (colors[0] * (1 - field[..., None]) + colors[1] * field[..., None]).astype(np.float32)


def _object_tones(rng: np.random.Generator, class_index: int,
                  config: SyntheticConfig) -> np.ndarray:
    """The two RGB tones (float [2, 3]) of one object: its colour, and that colour darker."""
    sector = 1.0 / config.num_object_classes  # hue sectors, as a fraction of the colour wheel
    half_range = min(0.5, sector / 2 * (1 + 2 * config.color_overlap))
    hue = class_index * sector + rng.uniform(-half_range, half_range)
    saturation = rng.uniform(0.45, 0.95)
    value = rng.uniform(0.55, 1.0)
    darker = value * (1 - config.texture_contrast * rng.uniform(0.8, 1.0))
    return _hsv_to_rgb(np.array([hue, hue]), np.array([saturation, saturation]),
                       np.array([value, darker]))


def _shape_mask(rng: np.random.Generator, shape: str, rows: np.ndarray, cols: np.ndarray,
                config: SyntheticConfig) -> np.ndarray:
    """Boolean [H, W] mask of one object of a shape family at a random place, size and angle."""
    height, width = rows.shape
    # Every shape gets the area of a disc of this radius, so the scale means the same for all.
    area_radius = rng.uniform(config.min_scale, config.max_scale) * min(height, width) / 2
    center_row = rng.uniform(0.1, 0.9) * height
    center_col = rng.uniform(0.1, 0.9) * width
    rotation = rng.uniform(0, 2 * np.pi)
    dy, dx = rows - center_row, cols - center_col
    along = dx * np.cos(rotation) + dy * np.sin(rotation)
    across = -dx * np.sin(rotation) + dy * np.cos(rotation)
    if shape == "ellipse":
        aspect = rng.uniform(0.7, 1.0)
        radius = area_radius / np.sqrt(aspect)
        return (along / radius) ** 2 + (across / (aspect * radius)) ** 2 <= 1
    if shape == "box":
        aspect = rng.uniform(0.45, 0.8)
        half_long = area_radius * np.sqrt(np.pi / (4 * aspect))
        return (np.abs(along) <= half_long) & (np.abs(across) <= aspect * half_long)
    if shape == "triangle":
        # Equilateral with circumradius R (area 3 sqrt(3) / 4 R^2): inside the three sides,
        # each at distance R / 2 from the centre.
        radius = area_radius * np.sqrt(np.pi / (3 * np.sqrt(3) / 4))
        mask = np.ones(rows.shape, dtype=bool)
        for corner in range(3):
            normal = rotation + 2 * np.pi * corner / 3
            mask &= dx * np.cos(normal) + dy * np.sin(normal) <= radius / 2
        return mask
    distance = np.hypot(along, across)
    if shape == "star":
        # Five points: the outline's radius runs linearly from R at the tips to R / 2
        # between them (area 7/12 pi R^2).
        radius = area_radius / np.sqrt(7 / 12)
        angle = np.arctan2(across, along)
        fraction = (angle * 5 / (2 * np.pi)) % 1.0
        return distance <= radius * (0.5 + 0.5 * np.abs(2 * fraction - 1))
    if shape == "ring":
        inner = rng.uniform(0.3, 0.45)
        radius = area_radius / np.sqrt(1 - inner ** 2)
        return (distance <= radius) & (distance >= inner * radius)
    raise ValueError(f"unknown shape family {shape!r}")


def _texture(rng: np.random.Generator, object_class: ObjectClass, rows: np.ndarray,
             cols: np.ndarray, pixel_scale: float) -> np.ndarray:
    """The class's two-tone pattern over the whole image: float [H, W] in 0..1 (1: dark tone)."""
    period = object_class.period_px * pixel_scale * rng.uniform(0.85, 1.15)
    angle = np.deg2rad(object_class.angle_deg + rng.uniform(-12, 12))
    # `along` runs across the stripes, `across` along them.
    along = (-cols * np.sin(angle) + rows * np.cos(angle)) / period
    across = (cols * np.cos(angle) + rows * np.sin(angle)) / period
    phases = rng.uniform(0, 2 * np.pi, size=2)
    if object_class.texture == "stripes":
        wave = np.sin(2 * np.pi * along + phases[0])
        return np.clip(0.5 + 1.5 * wave, 0, 1)
    if object_class.texture == "checks":
        wave = np.sin(2 * np.pi * along + phases[0]) * np.sin(2 * np.pi * across + phases[1])
        return np.clip(0.5 + 3 * wave, 0, 1)
    if object_class.texture == "dots":
        bump = (np.cos(2 * np.pi * along + phases[0]) + np.cos(2 * np.pi * across + phases[1])) / 2
        return np.clip((bump - 0.35) * 4, 0, 1)
    if object_class.texture == "speckle":
        # Random dark cells of about one period; nearest-neighbour so the grain stays sharp.
        height, width = rows.shape
        cell = max(period, 1.0)
        grid = rng.uniform(0, 1, size=(int(height / cell) + 2, int(width / cell) + 2))
        cells = grid[(rows / cell).astype(int), (cols / cell).astype(int)]
        return (cells > 0.5).astype(np.float32)
    raise ValueError(f"unknown texture {object_class.texture!r}")


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """HSV (arrays, hue in turns, wrapping) -> RGB float [..., 3] in 0..1."""
    hue = np.mod(hue, 1.0)
    sector = np.floor(hue * 6)
    offset = hue * 6 - sector
    low = value * (1 - saturation)
    falling = value * (1 - offset * saturation)
    rising = value * (1 - (1 - offset) * saturation)
    sector = sector.astype(int) % 6
    choices = [np.stack(channels, axis=-1) for channels in (
        (value, rising, low), (falling, value, low), (low, value, rising),
        (low, falling, value), (rising, low, value), (value, low, falling))]
    rgb = np.zeros(np.shape(hue) + (3,), dtype=np.float32)
    for index, candidate in enumerate(choices):
        rgb[sector == index] = candidate[sector == index]
    return rgb


__all__ = ["MAX_OBJECT_CLASSES", "OBJECT_CLASSES", "ObjectClass", "REFERENCE_SIZE",
           "SyntheticConfig", "boundary_band", "render_example"]
