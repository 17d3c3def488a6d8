"""Building segmentation: a compact U-Net on ortho + nDSM, its training on labelled synthetic cities, tiled
inference, the label rasterizer for footprint files, and an nDSM-threshold fallback.

Modules: :mod:`~sat2lod.segment.unet` (network), :mod:`~sat2lod.segment.features` (inputs),
:mod:`~sat2lod.segment.labels` (footprints -> mask), :mod:`~sat2lod.segment.train` (data, training, checkpoint),
:mod:`~sat2lod.segment.infer` (tiled inference, fallback, mask), :mod:`~sat2lod.segment.predict` (rule entry),
:mod:`~sat2lod.segment.metrics` (IoU, footprint F1).
"""
