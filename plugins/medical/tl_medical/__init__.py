"""tl-medical: medical image classification for tl (DICOM, PNG, JPEG, TIFF, BMP).

The data layer (`readers`, `dataset_index`, `demo`) imports no torch, so the runtime
(``tl predict``) works where torch is absent.
"""

__version__ = "0.1.0"
