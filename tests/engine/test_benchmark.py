import torch

from detkit.engine.benchmark import preset_model, random_images, time_models


def test_preset_model_and_alternating_timings():
    model = preset_model("yolo_synthetic", num_classes=4, overrides=["model.yolo.image_size=64"])
    assert not model.training and model.head.num_classes == 4
    images = random_images((48, 64), 2, torch.device("cpu"))
    assert [tuple(i.shape) for i in images] == [(3, 48, 64)] * 2
    times = time_models({"a": model, "b": model}, images, runs=3, warmup=1, device=torch.device("cpu"))
    assert set(times) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in times.values())
