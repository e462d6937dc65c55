"""Runners that execute an exported artifact on NHWC numpy data and return named outputs."""

from __future__ import annotations

import os

import numpy as np

from shared.data.validate import check_images


class OnnxRunner:
    """An ONNX model in onnxruntime, fed NHWC images whatever layout the graph was exported with.

    The exporter recorded the graph's layout and output names in the model's
    metadata (``twinvision.layout``, ``twinvision.outputs``).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.layout = meta.get("twinvision.layout", "NHWC")
        self.keys = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = check_images(images)
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)) if self.layout == "NCHW" else images
        return dict(zip(self.keys, self.session.run(None, {self.input_name: x})))
