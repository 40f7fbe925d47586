# Copyright (c) The proscale Authors. All rights reserved.
"""An embedded synthetic panoptic dataset in exact COCO panoptic format.

Every image is a scene of muted, textured "stuff" regions (a warped Voronoi
partition of the canvas) with saturated, flat-coloured "thing" shapes painted
on top. Besides its shape or texture, every class has a characteristic hue (as
real categories have a typical appearance), a cue that a small model trained
from scratch picks up within minutes. Each image draws its own latent
difficulty from a broad distribution; it controls how many objects there are,
how small they are, whether they overlap and occlude each other, how ambiguous
their hue is and how much they contrast with the background, how many stuff
regions there are and how much sensor noise and blur is added. The difficulty
itself is never written anywhere: a model has to infer it from the pixels,
which is what ECO-M2F's exit gate learns.

With ``context_fraction > 0`` a share of the images needs long-range
context (a difficulty where encoder depth matters per image): their stuff is
one segment painted in a grey texture that says nothing about its class,
except for a small cue patch in one corner painted in the class's own
texture and hue (:meth:`_SceneSampler._paint_context_stuff`). Pixels far
from the cue can only be labelled by relating them to it. Whether an image
is such a context image is drawn from its own generator, apart from the
scene's: with ``context_fraction=0`` (the default) the output is exactly
that of the plain generator. The annotation files then mark every image
(``images[i]['context']``), so results can be broken down by it
(``tools/analysis/exit_breakdown.py --by context``).

Layout written under ``out_dir`` (the COCO layout, split names without year)::

    out_dir/
    ├── synthetic_panoptic.json          # generator version and arguments
    ├── train/000000000001.jpg ...
    ├── val/000000000001.jpg ...
    └── annotations/
        ├── panoptic_train.json, panoptic_val.json
        ├── panoptic_train/000000000001.png ...   # RGB-encoded segment ids
        ├── panoptic_val/...
        └── instances_train.json, instances_val.json  # things, RLE masks

Generation is deterministic: image ``i`` of a split depends only on
``(seed, split, i, image_size)``, never on the number of images generated.
"""
import colorsys
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_utils
from mmengine.logging import print_log
from panopticapi.utils import id2rgb

GENERATOR_VERSION = 1
MANIFEST_FILE = 'synthetic_panoptic.json'
SPLITS = ('train', 'val')

THING_CLASSES = ('circle', 'square', 'triangle', 'cross')
STUFF_CLASSES = ('plain', 'stripes', 'checker', 'noise')
# Characteristic hues (degrees) of the classes; see `_thing_color` and
# `_stuff_colors`.
THING_HUES = (0, 90, 180, 270)
STUFF_HUES = (45, 135, 225, 315)

SYNTHETIC_PANOPTIC_METAINFO = dict(
    classes=THING_CLASSES + STUFF_CLASSES,
    thing_classes=THING_CLASSES,
    stuff_classes=STUFF_CLASSES,
    palette=[(220, 20, 60), (0, 128, 255), (255, 165, 0), (50, 205, 50),
             (128, 128, 128), (148, 0, 211), (0, 139, 139), (139, 69, 19)])
"""Metainfo for mmdet's ``CocoPanopticDataset``: things first, then stuff,
in category-id order (category id = class index + 1)."""

# Segment ids are ``image_id * SEGMENTS_PER_IMAGE + k`` (k >= 1): unique
# within a split (so ``COCOPanoptic`` indexing stays linear) and usable as
# COCO instance annotation ids.
SEGMENTS_PER_IMAGE = 256
# Segments (or visible parts of occluded objects) smaller than this fraction
# of the image are marked void (segment id 0), as unlabelled pixels in COCO.
MIN_SEGMENT_FRACTION = 1e-3

# The cue patch of a context image is a square of side image_size // 6 in
# one corner.
CUE_SIZE_DIVISOR = 6
# Field of the annotation files' ``images`` entries that tells context images
# (true) from plain ones (false); written with ``context_fraction > 0``.
CONTEXT_KEY = 'context'

Segment = Dict[str, object]


def synthetic_panoptic_categories() -> List[dict]:
    """Return the COCO panoptic ``categories`` of the synthetic dataset.

    Returns:
        list[dict]: One dict per class with ``id`` (1-based, things first),
        ``name``, ``isthing``, ``supercategory`` and ``color``.
    """
    meta = SYNTHETIC_PANOPTIC_METAINFO
    return [
        dict(
            id=idx + 1,
            name=name,
            isthing=int(name in meta['thing_classes']),
            supercategory='shape'
            if name in meta['thing_classes'] else 'texture',
            color=list(meta['palette'][idx]))
        for idx, name in enumerate(meta['classes'])
    ]


def _lerp(easy: float, hard: float, difficulty: float) -> float:
    """Interpolate a scene parameter between its easy and hard values."""
    return easy + (hard - easy) * difficulty


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """Convert an HSV colour (hue in degrees) to RGB in [0, 255], shape (3, ).
    """
    rgb = colorsys.hsv_to_rgb((hue / 360) % 1.0,
                              float(np.clip(saturation, 0, 1)),
                              float(np.clip(value, 0, 1)))
    return np.array(rgb) * 255


def _stuff_colors(rng: np.random.Generator, stuff: str,
                  difficulty: float) -> np.ndarray:
    """Two muted colours of a stuff texture, shape (2, 3).

    Like the things, every stuff class has a characteristic hue
    (:data:`STUFF_HUES`), but stuff is much less saturated. Hard scenes
    spread the hue, let stuff saturation reach that of pale things and lower
    the texture contrast.
    """
    spread = _lerp(10, 45, difficulty)
    hue = STUFF_HUES[STUFF_CLASSES.index(stuff)] + rng.uniform(-spread, spread)
    saturation = rng.uniform(
        _lerp(0.2, 0.1, difficulty), _lerp(0.35, 0.45, difficulty))
    value = rng.uniform(0.3, 0.8)
    half_contrast = _lerp(0.25, 0.08, difficulty) * rng.uniform(0.7, 1.0)
    return np.stack([
        _hsv_to_rgb(hue, saturation, value - half_contrast),
        _hsv_to_rgb(hue, saturation, value + half_contrast)
    ])


def _rotated(xx: np.ndarray, yy: np.ndarray,
             angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """Rotate pixel coordinates by ``angle`` (radians)."""
    cos, sin = np.cos(angle), np.sin(angle)
    return xx * cos + yy * sin, -xx * sin + yy * cos


def _plain_texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
                   colors: np.ndarray) -> np.ndarray:
    """One flat colour with a faint linear shading."""
    u, _ = _rotated(xx, yy, rng.uniform(0, 2 * np.pi))
    shade = 1 + 0.1 * (u / xx.shape[1] - 0.5)
    return colors.mean(axis=0) * shade[..., None]


def _stripes_texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
                     colors: np.ndarray) -> np.ndarray:
    """Two-colour stripes of random period and orientation."""
    u, _ = _rotated(xx, yy, rng.uniform(0, np.pi))
    period = rng.uniform(5, 12)
    return colors[(np.mod(u / period, 1.0) < 0.5).astype(np.intp)]


def _checker_texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
                     colors: np.ndarray) -> np.ndarray:
    """A two-colour checkerboard of random cell size and orientation."""
    u, v = _rotated(xx, yy, rng.uniform(0, np.pi / 2))
    cell = rng.uniform(4, 9)
    index = np.mod(np.floor(u / cell) + np.floor(v / cell), 2)
    return colors[index.astype(np.intp)]


def _noise_texture(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
                   colors: np.ndarray) -> np.ndarray:
    """Blocky random noise blending two colours."""
    height, width = xx.shape
    block = int(rng.integers(1, 4))
    coarse = rng.uniform(size=(-(-height // block), -(-width // block)))
    weight = np.kron(coarse, np.ones((block, block)))[:height, :width, None]
    return colors[0] * (1 - weight) + colors[1] * weight


STUFF_TEXTURES: Dict[str, Callable[..., np.ndarray]] = dict(
    plain=_plain_texture,
    stripes=_stripes_texture,
    checker=_checker_texture,
    noise=_noise_texture)


def _thing_color(rng: np.random.Generator, shape: str, difficulty: float,
                 background: np.ndarray) -> np.ndarray:
    """Colour of a thing, shape (3, ).

    Every shape class has a characteristic hue (:data:`THING_HUES`), as real
    categories have a typical appearance. Hard scenes blur that cue: a wider
    hue spread (up to the neighbouring classes' hues), paler colours and a
    brightness close to the background's, so the shape has to be read.
    """
    spread = _lerp(12, 50, difficulty)
    hue = THING_HUES[THING_CLASSES.index(shape)] + rng.uniform(-spread, spread)
    saturation = rng.uniform(
        _lerp(0.75, 0.35, difficulty), _lerp(1.0, 0.6, difficulty))
    offset = rng.uniform(
        _lerp(0.35, 0.05, difficulty), _lerp(0.55, 0.25, difficulty))
    value = background.max() / 255 + offset * rng.choice([-1, 1])
    if not 0.2 <= value <= 1.0:
        value = background.max() / 255 - (value - background.max() / 255)
    return _hsv_to_rgb(hue, saturation, value)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray,
                radius: float) -> np.ndarray:
    """Rasterise a thing shape centred at the origin of (u, v).

    Args:
        shape (str): One of :data:`THING_CLASSES`.
        u (np.ndarray): Rotated x coordinates relative to the centre.
        v (np.ndarray): Rotated y coordinates relative to the centre.
        radius (float): Circumradius-like size in pixels.

    Returns:
        np.ndarray: Boolean mask with the shape of ``u``.
    """
    if shape == 'circle':
        return u**2 + v**2 <= radius**2
    if shape == 'square':
        half = 0.8 * radius
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == 'triangle':
        normals = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        dists = (
            u[..., None] * np.cos(normals) + v[..., None] * np.sin(normals))
        return dists.max(axis=-1) <= radius / 2
    if shape == 'cross':
        arm = 0.32 * radius
        au, av = np.abs(u), np.abs(v)
        return ((au <= radius) & (av <= arm)) | ((au <= arm) & (av <= radius))
    raise ValueError(f'Unknown synthetic thing shape {shape!r}; expected one '
                     f'of {THING_CLASSES}.')


class _SceneSampler:
    """Draw one synthetic panoptic scene.

    Args:
        image_size (int): Side of the square image in pixels.
        context_fraction (float): Probability that an image is a context
            image (its stuff class is given by a distant cue only).
            Defaults to 0.
    """

    def __init__(self, image_size: int, context_fraction: float = 0.0) -> None:
        self.size = image_size
        self.context_fraction = context_fraction
        yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
        self.xx, self.yy = xx, yy
        self.min_area = max(4, int(MIN_SEGMENT_FRACTION * image_size**2))
        self.cue_size = max(4, image_size // CUE_SIZE_DIVISOR)

    def _stuff_layout(self, rng: np.random.Generator,
                      num_regions: int) -> np.ndarray:
        """Partition the canvas into warped Voronoi cells, shape (H, W)."""
        if num_regions == 1:
            return np.zeros((self.size, self.size), dtype=np.intp)
        size = self.size
        amp, freq, phase = (rng.uniform(0, 0.08 * size, 2),
                            rng.uniform(1, 3, 2) * 2 * np.pi / size,
                            rng.uniform(0, 2 * np.pi, 2))
        wx = self.xx + amp[0] * np.sin(freq[0] * self.yy + phase[0])
        wy = self.yy + amp[1] * np.sin(freq[1] * self.xx + phase[1])
        seeds = rng.uniform(0, size, size=(num_regions, 2))
        dist = ((wx[..., None] - seeds[:, 0])**2 +
                (wy[..., None] - seeds[:, 1])**2)
        return dist.argmin(axis=-1)

    def _thing_mask(self, shape: str, center: np.ndarray, radius: float,
                    angle: float) -> np.ndarray:
        """Rasterise one shape (evaluated in its bounding window only)."""
        reach = 1.2 * radius + 1
        x0, y0 = (max(0, int(c - reach)) for c in center)
        x1, y1 = (min(self.size, int(c + reach) + 2) for c in center)
        u, v = _rotated(self.xx[y0:y1, x0:x1] - center[0],
                        self.yy[y0:y1, x0:x1] - center[1], angle)
        mask = np.zeros((self.size, self.size), dtype=bool)
        mask[y0:y1, x0:x1] = _shape_mask(shape, u, v, radius)
        return mask

    def _place_things(
        self,
        rng: np.random.Generator,
        difficulty: float,
        num_things: int,
        reserved: Optional[np.ndarray] = None
    ) -> List[Tuple[str, np.ndarray]]:
        """Sample thing shapes; returns (class name, full mask) pairs.

        No thing covers a pixel of ``reserved`` (H, W), if given.
        """
        size = self.size
        lo = _lerp(0.22, 0.04, difficulty) * size
        hi = _lerp(0.42, 0.13, difficulty) * size
        allow_overlap = rng.uniform() < difficulty
        occupied = np.zeros((size, size), dtype=bool)
        things = []
        for _ in range(num_things):
            for _attempt in range(10):
                shape = THING_CLASSES[rng.integers(len(THING_CLASSES))]
                radius = rng.uniform(lo, hi)
                center = rng.uniform(0.1 * size, 0.9 * size, size=2)
                mask = self._thing_mask(shape, center, radius,
                                        rng.uniform(0, 2 * np.pi))
                if reserved is not None and (mask & reserved).any():
                    continue
                if allow_overlap or not (mask & occupied).any():
                    break
            else:
                continue
            occupied |= mask
            things.append((shape, mask))
        return things

    def _paint_stuff(self, rng: np.random.Generator, difficulty: float,
                     image: np.ndarray, seg: np.ndarray, base_id: int,
                     labels: Dict[int, int]) -> None:
        """Paint the textured stuff regions, one segment per stuff class."""
        num_regions = 1 + int(rng.binomial(3, difficulty))
        layout = self._stuff_layout(rng, num_regions)
        region_classes = rng.integers(len(STUFF_CLASSES), size=num_regions)
        for stuff_idx in np.unique(region_classes):
            mask = np.isin(layout, np.flatnonzero(region_classes == stuff_idx))
            stuff = STUFF_CLASSES[stuff_idx]
            texture = STUFF_TEXTURES[stuff](rng, self.xx, self.yy,
                                            _stuff_colors(
                                                rng, stuff, difficulty))
            image[mask] = texture[mask]
            seg_id = base_id + len(labels) + 1
            seg[mask] = seg_id
            labels[seg_id] = len(THING_CLASSES) + int(stuff_idx) + 1

    def _paint_context_stuff(self, rng: np.random.Generator,
                             difficulty: float, stuff_idx: int,
                             image: np.ndarray, seg: np.ndarray,
                             base_id: int,
                             labels: Dict[int, int]) -> np.ndarray:
        """Paint the stuff of a context image: one segment of class
        ``stuff_idx`` whose only local evidence is a cue in one corner.

        The whole canvas gets a grey (unsaturated) texture of a random
        pattern, drawn before anything that depends on ``stuff_idx``: away
        from the cue the pixels are the same whatever the class. The cue, a
        square of side ``cue_size`` in a random corner, shows the class's
        texture in its characteristic colours (those of an easy scene).

        Returns:
            np.ndarray: The cue's mask, shape (H, W), for the things to
            leave visible.
        """
        pattern = STUFF_CLASSES[rng.integers(len(STUFF_CLASSES))]
        value = rng.uniform(0.35, 0.75)
        half_contrast = _lerp(0.2, 0.08, difficulty) * rng.uniform(0.7, 1.0)
        grey = np.array([[255 * (value - half_contrast)] * 3,
                         [255 * (value + half_contrast)] * 3])
        image[:] = STUFF_TEXTURES[pattern](rng, self.xx, self.yy, grey)
        corner = rng.integers(2, size=2) * (self.size - self.cue_size)
        cue = np.zeros((self.size, self.size), dtype=bool)
        cue[corner[1]:corner[1] + self.cue_size,
            corner[0]:corner[0] + self.cue_size] = True
        stuff = STUFF_CLASSES[stuff_idx]
        texture = STUFF_TEXTURES[stuff](rng, self.xx, self.yy,
                                        _stuff_colors(rng, stuff, 0.0))
        image[cue] = texture[cue]
        seg_id = base_id + len(labels) + 1
        seg[:] = seg_id
        labels[seg_id] = len(THING_CLASSES) + stuff_idx + 1
        return cue

    def _paint_things(self,
                      rng: np.random.Generator,
                      difficulty: float,
                      image: np.ndarray,
                      seg: np.ndarray,
                      base_id: int,
                      labels: Dict[int, int],
                      reserved: Optional[np.ndarray] = None) -> None:
        """Paint flat-coloured shapes, later ones occluding earlier ones,
        none over ``reserved`` (H, W) if given."""
        num_things = 1 + int(rng.binomial(13, difficulty**1.3))
        for shape, mask in self._place_things(rng, difficulty, num_things,
                                              reserved):
            image[mask] = _thing_color(rng, shape, difficulty,
                                       image[mask].mean(axis=0))
            seg_id = base_id + len(labels) + 1
            seg[mask] = seg_id
            labels[seg_id] = THING_CLASSES.index(shape) + 1

    @staticmethod
    def _degrade(rng: np.random.Generator, difficulty: float,
                 image: np.ndarray) -> np.ndarray:
        """Add sensor noise and blur; returns the uint8 image."""
        sigma = _lerp(0, 14, difficulty) * rng.uniform()
        image = image + rng.normal(scale=sigma, size=image.shape)
        if rng.uniform() < difficulty - 0.5:
            image = cv2.GaussianBlur(image, (3, 3), 0)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)

    def draw_context(self,
                     context_rng: np.random.Generator) -> Optional[int]:
        """Draw whether an image is a context image, and its stuff class.

        Args:
            context_rng (np.random.Generator): The image's generator of the
                context choice (apart from the scene's).

        Returns:
            int or None: The stuff class index of a context image, None for
            a plain image (always with ``context_fraction=0``, drawing
            nothing).
        """
        if self.context_fraction <= 0 or (context_rng.uniform() >=
                                          self.context_fraction):
            return None
        return int(context_rng.integers(len(STUFF_CLASSES)))

    def __call__(
        self,
        rng: np.random.Generator,
        image_id: int,
        context_stuff: Optional[int] = None
    ) -> Tuple[np.ndarray, np.ndarray, List[Segment]]:
        """Draw a scene.

        Args:
            rng (np.random.Generator): The image's own random generator.
            image_id (int): Image id, used to build unique segment ids.
            context_stuff (int, optional): Stuff class index of a context
                image (see :meth:`draw_context`); None draws a plain scene.

        Returns:
            tuple: ``image`` (H, W, 3) uint8 RGB, ``seg`` (H, W) int64 segment
            ids (0 = void) and the list of segments as
            ``dict(id, category_id, mask)``.
        """
        difficulty = rng.uniform()
        image = np.zeros((self.size, self.size, 3))
        seg = np.zeros((self.size, self.size), dtype=np.int64)
        base_id = image_id * SEGMENTS_PER_IMAGE
        labels: Dict[int, int] = {}
        cue = None
        if context_stuff is not None:
            cue = self._paint_context_stuff(rng, difficulty, context_stuff,
                                            image, seg, base_id, labels)
        else:
            self._paint_stuff(rng, difficulty, image, seg, base_id, labels)
        self._paint_things(rng, difficulty, image, seg, base_id, labels, cue)
        image = self._degrade(rng, difficulty, image)

        segments: List[Segment] = []
        for seg_id, category_id in labels.items():
            mask = seg == seg_id
            if mask.sum() < self.min_area:
                seg[mask] = 0
            else:
                segments.append(
                    dict(id=seg_id, category_id=category_id, mask=mask))
        return image, seg, segments


def _segment_record(segment: Segment) -> Tuple[dict, dict]:
    """COCO panoptic ``segments_info`` entry and the mask's RLE."""
    rle = mask_utils.encode(np.asfortranarray(segment['mask'], np.uint8))
    record = dict(
        id=int(segment['id']),
        category_id=int(segment['category_id']),
        area=int(mask_utils.area(rle)),
        bbox=[int(x) for x in mask_utils.toBbox(rle)],
        iscrowd=0)
    rle['counts'] = rle['counts'].decode('ascii')
    return record, rle


def _image_rng(seed: int,
               split: str,
               index: int,
               stream: int = 0) -> np.random.Generator:
    """Independent random generator of image ``index`` in ``split``.

    Stream 0 draws the scene, stream 1 the context-image choice.
    """
    spawn_key = (SPLITS.index(split), index) + ((stream, ) if stream else ())
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=spawn_key))


def _write_split(root: str,
                 split: str,
                 num_images: int,
                 seed: int,
                 image_size: int,
                 context_fraction: float = 0.0) -> None:
    """Write the images, panoptic PNGs and both JSON files of one split."""
    img_dir = osp.join(root, split)
    pan_dir = osp.join(root, 'annotations', f'panoptic_{split}')
    os.makedirs(img_dir)
    os.makedirs(pan_dir)
    sampler = _SceneSampler(image_size, context_fraction)
    categories = synthetic_panoptic_categories()
    images, pan_anns, inst_anns = [], [], []
    for index in range(num_images):
        image_id = index + 1
        context_stuff = sampler.draw_context(
            _image_rng(seed, split, index, stream=1))
        image, seg, segments = sampler(
            _image_rng(seed, split, index), image_id, context_stuff)
        stem = f'{image_id:012d}'
        cv2.imwrite(
            osp.join(img_dir, f'{stem}.jpg'), image[..., ::-1],
            [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(pan_dir, f'{stem}.png'), id2rgb(seg)[..., ::-1])
        image_info = dict(
            id=image_id,
            file_name=f'{stem}.jpg',
            height=image_size,
            width=image_size)
        if context_fraction > 0:
            image_info[CONTEXT_KEY] = context_stuff is not None
        images.append(image_info)
        segments_info = []
        for segment in segments:
            record, rle = _segment_record(segment)
            segments_info.append(record)
            if categories[record['category_id'] - 1]['isthing']:
                inst_anns.append(
                    dict(record, image_id=image_id, segmentation=rle))
        pan_anns.append(
            dict(
                image_id=image_id,
                file_name=f'{stem}.png',
                segments_info=segments_info))

    info = dict(
        description='proscale synthetic panoptic dataset',
        version=str(GENERATOR_VERSION))
    panoptic = dict(
        info=info,
        images=images,
        annotations=pan_anns,
        categories=[{
            k: v
            for k, v in cat.items() if k != 'color'
        } for cat in categories])
    instances = dict(
        info=info,
        images=images,
        annotations=inst_anns,
        categories=[{
            k: cat[k]
            for k in ('id', 'name', 'supercategory')
        } for cat in categories if cat['isthing']])
    ann_dir = osp.join(root, 'annotations')
    for name, content in ((f'panoptic_{split}.json', panoptic),
                          (f'instances_{split}.json', instances)):
        with open(osp.join(ann_dir, name), 'w') as f:
            f.write(json.dumps(content))


def _read_manifest(out_dir: str) -> Optional[dict]:
    """Return the manifest of an existing dataset, or None if there is none."""
    path = osp.join(out_dir, MANIFEST_FILE)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_synthetic_panoptic(out_dir: str,
                                num_train: int = 400,
                                num_val: int = 100,
                                seed: int = 0,
                                image_size: int = 128,
                                force: bool = False,
                                context_fraction: float = 0.0) -> dict:
    """Generate the synthetic panoptic dataset under ``out_dir``.

    The split files are written to a temporary sibling directory which is
    renamed into place once complete, so an interrupted run never leaves a
    half-written dataset. If ``out_dir`` already holds a dataset generated
    with the same arguments it is reused as is.

    Args:
        out_dir (str): Dataset root (``data_root`` of the configs).
        num_train (int): Number of training images. Defaults to 400.
        num_val (int): Number of validation images. Defaults to 100.
        seed (int): Random seed; the output is a function of the arguments.
            Defaults to 0.
        image_size (int): Side of the square images. Defaults to 128.
        force (bool): Replace an existing, different dataset or non-empty
            directory at ``out_dir``. Defaults to False.
        context_fraction (float): Share of the images (drawn per image)
            whose stuff class is given by a distant cue only, see the
            module docstring. When > 0 it is recorded in the manifest, and
            every ``images`` entry of the annotation files gets a boolean
            field :data:`CONTEXT_KEY` (``manifest['context_key']``) saying
            whether it is a context image. Defaults to 0 (the plain
            dataset).

    Returns:
        dict: The dataset manifest (generator version and arguments).

    Raises:
        ValueError: If an argument is out of range.
        FileExistsError: If ``out_dir`` holds other content and ``force`` is
            False.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}.')
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}.')
    if not 0 <= context_fraction <= 1:
        raise ValueError('context_fraction must be in [0, 1], got '
                         f'{context_fraction}.')
    manifest = dict(
        generator='proscale.synthetic_panoptic',
        version=GENERATOR_VERSION,
        num_train=int(num_train),
        num_val=int(num_val),
        seed=int(seed),
        image_size=int(image_size))
    if context_fraction > 0:
        manifest['context_fraction'] = float(context_fraction)
        manifest['context_key'] = CONTEXT_KEY
    out_dir = osp.abspath(out_dir)
    if osp.exists(out_dir):
        if _read_manifest(out_dir) == manifest:
            print_log(
                f'Reusing the synthetic panoptic dataset at {out_dir}.',
                logger='current')
            return manifest
        if os.listdir(out_dir) and not force:
            raise FileExistsError(
                f'{out_dir} exists and does not hold a synthetic panoptic '
                f'dataset generated with {manifest}; remove it or pass '
                'force=True (--force) to replace it.')

    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(
        prefix=f'.{osp.basename(out_dir)}.tmp-', dir=parent)
    try:
        for split, num_images in zip(SPLITS, (num_train, num_val)):
            _write_split(tmp_dir, split, num_images, seed, image_size,
                         context_fraction)
        with open(osp.join(tmp_dir, MANIFEST_FILE), 'w') as f:
            json.dump(manifest, f, indent=2)
        if osp.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp_dir, out_dir)
    finally:
        if osp.exists(tmp_dir):
            shutil.rmtree(tmp_dir)
    print_log(
        f'Generated the synthetic panoptic dataset at {out_dir} '
        f'({num_train} train / {num_val} val images).',
        logger='current')
    return manifest
