"""A Severstal-like synthetic dataset: same layout, CSV formats and statistics as Kaggle's.

The generator writes a folder that every part of steel-keras reads exactly like the real
download (``train.csv``, ``train_images/``, ``test_images/``, ``sample_submission.csv``) plus
``test_truth.csv`` (the test set's masks, so the competition metric can be computed),
``dataset_info.json`` and ``synthetic_manifest.json`` (the files it wrote).

What it copies from the real data (see ``shared/reference/severstal_facts.md``):

- the share of defect-free images (47 %), of each class and of multi-class images, taken from
  the real counts (:mod:`.labels`); classes never overlap;
- per-class mask areas and annotator-drawn polygon masks, and per-class defect looks
  (:mod:`.defects`);
- the steel: the camera's lighting, rolled texture, glints, rolling marks, the dark floor
  beyond the sheet's edge and unlabelled marks that look like defects (:mod:`.steel`), drawn
  so that whole-image statistics fall inside the real images' interquartile ranges
  (:mod:`.realism` measures them); JPEG quality 90 like the real files.

Every image has its own random generator seeded from ``(seed, split, index)``, so the output is
the same byte for byte whatever the number of worker processes, and ``--train 100`` gives the
first 100 images of ``--train 1000``.

Example:
    >>> from steel_keras.synthetic import generate_dataset
    >>> path = generate_dataset("/tmp/steel-demo", n_train=8, n_test=2, seed=1, progress=False)
    >>> sorted(p.name for p in path.iterdir())[:3]
    ['dataset_info.json', 'sample_submission.csv', 'synthetic_manifest.json']
"""

from steel_keras.synthetic.dataset import (
    COMPARE_PNG,
    DEFAULT_SEED,
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    GENERATOR,
    GENERATOR_VERSION,
    IN_PROGRESS_FILE,
    INFO_FILE,
    MANIFEST_FILE,
    ensure_default_dataset,
    generate_dataset,
    is_synthetic_dataset,
    resolve_data_dir,
)
from steel_keras.synthetic.render import JPEG_QUALITY, render_image

__all__ = [
    "COMPARE_PNG",
    "DEFAULT_SEED",
    "DEFAULT_TEST",
    "DEFAULT_TRAIN",
    "GENERATOR",
    "GENERATOR_VERSION",
    "INFO_FILE",
    "IN_PROGRESS_FILE",
    "JPEG_QUALITY",
    "MANIFEST_FILE",
    "ensure_default_dataset",
    "generate_dataset",
    "is_synthetic_dataset",
    "render_image",
    "resolve_data_dir",
]
