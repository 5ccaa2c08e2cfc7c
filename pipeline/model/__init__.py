"""The model: what turns a frame into a code, and the checkpoint that carries it.

    archs       build_model: the paper's AlexNet rows (alexnet, alexnet-sp, im-alexnet-sp) and
                the compact CPU variant (alexnet.py, compact.py, layers.py)
    preprocess  the one preprocessing of training and ingestion (frame -> model input)
    settings    encode settings (test-time views, precision): part of the model id
    encode      the one encode step: model inputs -> relaxed codes and log-probabilities
    checkpoint  safetensors + config.json; the Checkpoint value a job opens once
    precision   where bf16 autocast pays

Importing this package imports no torch: jobs that never encode stay light.
"""
