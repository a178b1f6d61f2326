"""The YOLO-family single-shot detector: PAN neck, decoupled head, SimOTA assignment, loss and decoding."""

from detkit.modeling.yolo.c2f_neck import C2fPANNeck
from detkit.modeling.yolo.detector import YOLODetector
from detkit.modeling.yolo.head import DecoupledHead, DensePredictions
from detkit.modeling.yolo.letterbox import LetterboxTransform
from detkit.modeling.yolo.neck import PANNeck

__all__ = ["C2fPANNeck", "DecoupledHead", "DensePredictions", "LetterboxTransform", "PANNeck", "YOLODetector"]
