"""The seed paper's four models: full-scale and ``--quick`` PTQ configurations.

Shared by `ptq_accuracy.py` (seed table: PTQ accuracy per model across bit
widths) and `quant_error.py` (seed table: quantization error per method and
bit width on every model's layers). Each entry is a `PTQJobConfig` for the
full-scale run (ImageNet / SST-2 with the user's converted checkpoints; see
docs/data.md and the README's Models section for conversion) and one for
``--quick`` on the embedded data, with a note on what the quick run stands
in with.
"""

from __future__ import annotations

from bskmq_jax.ptq_job import PTQJobConfig

BITS = (2, 3, 4)

#: name -> (full-scale config factory(data_dir, checkpoint), quick config, note on the quick run)
MODELS = {
    "resnet18": (
        lambda data_dir, ck: PTQJobConfig(model="resnet18", dataset="imagenet2012", checkpoint=ck, data_dir=data_dir,
                                          batch_size=64, calib_batches=8, calib_seeds=3, eval_examples=10000, adc_bits=BITS),
        PTQJobConfig(model="resnet18", dataset="digits", adc_bits=BITS),
        "CIFAR-stem ResNet-18 at width 0.25 on digits (16x16), trained on first use",
    ),
    "vgg16": (
        lambda data_dir, ck: PTQJobConfig(model="vgg16", dataset="imagenet2012", checkpoint=ck, data_dir=data_dir,
                                          batch_size=64, calib_batches=8, calib_seeds=3, eval_examples=10000, adc_bits=BITS),
        PTQJobConfig(model="vgg16_bn", dataset="digits", size=32, adc_bits=BITS,
                     model_options=(("classifier_width", 64), ("in_channels", 1), ("pool_size", 1), ("width", 0.125))),
        "VGG-16-BN at width 0.125 (classifier 64, 1x1 pool) on digits (32x32), trained on first use; "
        "BN keeps the small net trainable in 400 steps",
    ),
    "inception_v3": (
        lambda data_dir, ck: PTQJobConfig(model="inception_v3", dataset="imagenet2012", checkpoint=ck, data_dir=data_dir,
                                          batch_size=32, calib_batches=16, calib_seeds=3, eval_examples=10000, adc_bits=BITS),
        None,
        "no quick run: Inception-V3 has no small variant and needs >= 75x75 inputs; training it on 2 CPU cores "
        "takes far longer than the quick budget, so its rows come only from the full-scale command",
    ),
    "distilbert": (
        lambda data_dir, ck: PTQJobConfig(model="distilbert", dataset="glue/sst2", checkpoint=ck, data_dir=data_dir,
                                          batch_size=64, calib_batches=8, calib_seeds=3, eval_examples=None, adc_bits=BITS),
        PTQJobConfig(model="minilm", dataset="sentences", adc_bits=BITS, batch_size=60, calib_batches=2, calib_seeds=1),
        "all-MiniLM-L6-v2 (a 6-layer BERT, real weights) on the embedded sentences; metric: cosine to float "
        "embeddings, not SST-2 accuracy",
    ),
}
