"""Small images with known objects, drawn with OpenCV, for the proposal tests."""

import cv2
import numpy as np

# (x1, y1, x2, y2) and RGB colour of each flat-coloured rectangle on a grey background.
OBJECTS = (((10, 12, 50, 40), (220, 30, 30)), ((60, 50, 110, 100), (30, 200, 40)), ((15, 70, 45, 115), (40, 40, 230)))


def rectangles_image(height: int = 128, width: int = 128) -> np.ndarray:
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    for (x1, y1, x2, y2), colour in OBJECTS:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, thickness=-1)
    return image


def object_boxes() -> np.ndarray:
    return np.array([box for box, _ in OBJECTS], dtype=np.float32)
