"""Rendering: detections drawn on images, training curves and benchmark charts, as OpenCV images.

Below the engine and above nothing but ``structures`` and ``io``: it draws what it is given (numpy
images, ``Detections``, metric records, benchmark results) and never computes a detection or a
metric. matplotlib is not a dependency; every chart is drawn with OpenCV primitives (``plotting``).
"""
