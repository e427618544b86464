"""steel-keras: a Keras 3 course and toolkit for steel surface defect detection (Severstal).

Importing the package is cheap: TensorFlow, Keras and segmentation-models are imported only by
the modules that need them. Two environment variables are set here, before any of those imports:

- ``SM_FRAMEWORK=tf.keras``: segmentation-models fails to import on Keras 3 without it.
- ``TF_CPP_MIN_LOG_LEVEL=2``: hides TensorFlow's C++ info logs (set it yourself to override).
"""

import os

os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
