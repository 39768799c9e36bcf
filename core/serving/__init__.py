"""`tl serve`: run directories behind the Open Inference Protocol (KServe v2) over HTTP, a
raw-data endpoint that speaks `tl predict`'s inputs and rows, dynamic batching, Prometheus
metrics. Torch-free: starlette, uvicorn, prometheus-client, numpy and onnxruntime.

Modules: ``protocol`` (v2 tensors ⇄ numpy, binary tensor extension), ``batching`` (one
dynamic batcher per model), ``models`` (what is served), ``raw`` (``/v1/.../predict``
through the plugin's ``read_batches``/``decode``), ``metrics``, ``app`` (routes and the
per-request envelope), ``server`` (uvicorn, binding, graceful drain).
"""

from __future__ import annotations

from .server import ServeOptions, serve

__all__ = ["ServeOptions", "serve"]
