"""Datasets: VOC layout, palettes, records, the tf.data pipeline, synthetic data."""
