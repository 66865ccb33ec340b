"""The blob world the export and inference tests share: coloured blobs on a noisy grey
background (background, red discs, blue boxes), a tiny three-layer network that learns them
in a few seconds, and the same blobs as a VOC-layout dataset and a run folder."""

import keras
import numpy as np
from PIL import Image

from pixelwise.data.palette import write_label
from pixelwise.data.pipeline import MEAN_RGB
from pixelwise.data.spec import DatasetSpec
from pixelwise.models.layers import ImageNetPreprocessing, ResizeToMatch

SIZE = 64
BLOB_SPEC = DatasetSpec(("background", "red disc", "blue box"),
                        ((0, 0, 0), (200, 30, 30), (30, 30, 200)))


def blob_example(rng: np.random.Generator, height: int = SIZE, width: int = SIZE):
    """A grey noisy background with a red disc and a blue box; (uint8 image, uint8 label)."""
    image = rng.normal(128, 18, (height, width, 3))
    label_map = np.zeros((height, width), dtype=np.uint8)
    rows, cols = np.mgrid[:height, :width]
    radius = rng.uniform(0.12, 0.25) * min(height, width)
    centre = rng.uniform(radius, [height - radius, width - radius])
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2
    top, left = rng.integers(0, [height * 3 // 4, width * 3 // 4])
    box = np.zeros_like(disc)
    box[top:top + int(rng.integers(height // 6, height // 3)),
        left:left + int(rng.integers(width // 6, width // 3))] = True
    image[disc] = rng.normal((190, 60, 60), 18, (int(disc.sum()), 3))
    image[box] = rng.normal((60, 60, 190), 18, (int(box.sum()), 3))
    label_map[disc], label_map[box] = 1, 2
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label_map


def blob_examples(count: int, seed: int, height: int = SIZE, width: int = SIZE):
    rng = np.random.default_rng(seed)
    return [blob_example(rng, height, width) for _ in range(count)]


def tiny_network(num_classes: int) -> keras.Model:
    """RGB 0..255 in, logits at the input size out, stride 4, with pixelwise's layers."""
    image = keras.Input((None, None, 3), name="image")
    features = ImageNetPreprocessing("tf")(image)
    features = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(features)
    features = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(features)
    coarse = keras.layers.Conv2D(num_classes, 1, name="classifier")(features)
    logits = ResizeToMatch(name="logits")([coarse, image])
    return keras.Model(image, logits, name="tiny_blob_net")


def trained_blob_model() -> keras.Model:
    """The tiny network trained for a few seconds on 24 blob images (~90% mean IoU)."""
    keras.utils.set_random_seed(0)
    model = tiny_network(BLOB_SPEC.num_classes)
    examples = blob_examples(24, seed=1)
    images = np.stack([image for image, _ in examples]).astype("float32")
    labels = np.stack([label for _, label in examples]).astype("int32")
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=8, epochs=25, verbose=0, shuffle=True)
    return model


def keras_argmax(model: keras.Model, images: np.ndarray, multiple: int = 16) -> np.ndarray:
    """The model's class maps, padding by hand (mean colour) to a multiple of the stride."""
    batch, height, width, _ = images.shape
    padded = np.empty((batch, -(-height // multiple) * multiple,
                       -(-width // multiple) * multiple, 3), dtype=np.float32)
    padded[:] = MEAN_RGB
    padded[:, :height, :width] = images
    logits = np.asarray(model(padded, training=False))
    return np.argmax(logits[:, :height, :width], axis=-1)


def class_iou(label_map: np.ndarray, class_map: np.ndarray, num_classes: int) -> float:
    ious = []
    for index in range(num_classes):
        union = np.count_nonzero((label_map == index) | (class_map == index))
        if union:
            ious.append(np.count_nonzero((label_map == index) & (class_map == index)) / union)
    return float(np.mean(ious))


def write_blob_dataset(root, count: int, seed: int):
    """The blobs in the VOC layout: JPEGs, palette PNGs, train/val lists, the classes."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = [f"blob_{index:03d}" for index in range(count)]
    for name, (image, label_map) in zip(names, blob_examples(count, seed)):
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        write_label(root / "SegmentationClass" / f"{name}.png", label_map, BLOB_SPEC)
    split = count * 2 // 3
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(names[:split]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(names[split:]) + "\n")
    BLOB_SPEC.save(root / "pixelwise_dataset.json")
    return root



def write_blob_run(root, model: keras.Model):
    """A run folder laid out as ``pixelwise.runs`` defines it: config.json (a U-Net run,
    stride 32, on the blob dataset written beside it), the classes, best.keras (``model``;
    training one through ``pixelwise.train`` took 90 s here, most of it tracing the first
    epoch)."""
    from pixelwise.config import DataConfig, ModelConfig, RunConfig
    from pixelwise.runs import RunFolder, save_model_atomically

    data = write_blob_dataset(root / "blobs", 36, seed=11)
    folder = RunFolder(root / "run")
    folder.root.mkdir()
    RunConfig(data=DataConfig(source=str(data), input_size=SIZE, augment="none"),
              model=ModelConfig(name="unet", backbone="mobilenetv2",
                                backbone_weights=None)).save(folder.config_path)
    BLOB_SPEC.save(folder.spec_path)
    save_model_atomically(model, folder.best_model_path, include_optimizer=False)
    return folder.root
