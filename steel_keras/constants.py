"""Facts of the Severstal data that every module shares."""

IMAGE_HEIGHT = 256
IMAGE_WIDTH = 1600
IMAGE_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH)
NUM_CLASSES = 4
CLASS_IDS = (1, 2, 3, 4)
