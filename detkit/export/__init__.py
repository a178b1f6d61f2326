"""Detectors as single files: their graphs, the ONNX and TorchScript files, and runners for those files.

    graphs        which graph a pipeline exports as (``two_stage_graph``, ``yolo_graph``), its inputs and outputs
    preprocess, selection, pooling, masks
                  the eager steps for one image, without branches on tensor contents, for ``torch.export``
                  and TorchScript alike
    onnx_file, torchscript_file
                  writing each format and loading it in its runtime; ``files`` tells them apart
    metadata      what every file says about itself (class names, input contract, normalization, version)
    runtime       ``ExportedDetector``: a file behind the detector call contract; ``fixed_size`` letterboxes
    verify        eager against exported detections, within a tolerance

The engine (``engine/export.py``) drives an export; ``engine/predict.py`` loads a file as a model.
"""
