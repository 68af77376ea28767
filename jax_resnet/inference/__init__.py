"""Inference, below the programs: what `jax-resnet predict` and `export` stand on.

    from jax_resnet import inference
    classifier = inference.load_classifier(tag='resnet50.tv2_in1k')   # or weights='runs/x'
    for results in classifier.classify_files(inference.image_paths(['cat.jpg'])):
      ...                                                   # [(path, [(class, probability)])]

`images`: image files to model inputs (torchvision's and timm's eval transform, or a run's
recorded one); `classifier`: weights through the one loader (`weights.loader`), the transform
their record gives, batched top-k classification with class names; `preprocessing`: the
transform as fields and as a JAX function of uint8 images (what export bakes in).
"""

from jax_resnet.inference.images import (CROP, IMAGENET_MEAN, IMAGENET_STD, MAX_RESIZED_PIXELS,
                                         RESIZE, ImageError, InferenceError, check_image,
                                         crop_offsets, image_array, image_paths, preprocess,
                                         read_image, read_image_as_trained, resized_size)
from jax_resnet.inference.preprocessing import (Preprocessing, of_eval_record,
                                                preprocessing_function, resampling_matrix)
from jax_resnet.inference.classifier import (Classifier, Plan, check_images, check_model,
                                             class_names_for, class_names_of, classifier_of,
                                             classify, is_workdir, load_classifier, plan,
                                             read_weights, tag_transform, top_k)

__all__ = [
    'CROP', 'Classifier', 'IMAGENET_MEAN', 'IMAGENET_STD', 'ImageError', 'InferenceError',
    'MAX_RESIZED_PIXELS', 'Plan', 'Preprocessing', 'RESIZE', 'check_image', 'check_images',
    'check_model', 'class_names_for', 'class_names_of', 'classifier_of', 'classify',
    'crop_offsets', 'image_array', 'image_paths', 'is_workdir', 'load_classifier',
    'of_eval_record', 'plan', 'preprocess', 'preprocessing_function', 'read_image',
    'read_image_as_trained', 'read_weights', 'resampling_matrix', 'resized_size',
    'tag_transform', 'top_k',
]
