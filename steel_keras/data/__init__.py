"""Reading the Severstal data: CSV files, the Kaggle-layout folder, images, input pipelines."""

from steel_keras.data.annotations import (
    Annotations,
    load_annotations,
    read_annotations,
    read_submission,
    write_annotations,
    write_submission,
)

__all__ = [
    "Annotations",
    "load_annotations",
    "read_annotations",
    "read_submission",
    "write_annotations",
    "write_submission",
]
