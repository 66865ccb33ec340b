"""The names an export and its readers agree on.

``pixelwise.export`` writes SavedModels and .tflite files with these signature, tensor and
metadata names; the segmenters of ``pixelwise.inference`` read them back.
"""

SERVING_SIGNATURE = "serving_default"
METADATA_SIGNATURE = "metadata"
INPUT_NAME = "images"
CLASS_MAP_NAME = "class_map"
PROBABILITIES_NAME = "probabilities"
DRIVABLE_NAME = "drivable"  # a .tflite export's summed probability of the drivable classes
DRIVABLE_CLASSES_KEY = "drivable_classes"  # export info: those classes' indices
SPEC_METADATA_NAME = "pixelwise_dataset"
EXPORT_METADATA_NAME = "pixelwise_export"
EXPORT_INFO_NAME = "pixelwise_export.json"  # a SavedModel's assets/ file

__all__ = ["CLASS_MAP_NAME", "DRIVABLE_CLASSES_KEY", "DRIVABLE_NAME", "EXPORT_INFO_NAME", "EXPORT_METADATA_NAME", "INPUT_NAME",
           "METADATA_SIGNATURE", "PROBABILITIES_NAME", "SERVING_SIGNATURE",
           "SPEC_METADATA_NAME"]
