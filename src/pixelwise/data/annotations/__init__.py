"""Annotations from labelling tools (LabelMe, CVAT, COCO) as a dataset in the VOC layout.

    from pixelwise.data.annotations.labelme import import_labelme
    summary = import_labelme("frames/", "mydata")     # then: pixelwise data check mydata ...

One module a job: ``rasterize`` (each tool's drawing rule), ``classes`` (which classes, which
index a label gets), ``image_files`` (opening, finding, EXIF rotation), ``annotated`` (what
readers hand over), the readers ``labelme``, ``cvat``, ``cvat_masks`` and ``coco``,
``importer`` (draw and check everything, then write or raise), ``splits`` (the seeded
train/val draw), ``writer`` (staged, atomic writing; extending an existing dataset) and
``exports`` (folders and zips).
"""
