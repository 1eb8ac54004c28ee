"""The tests of each model package, which a launch must see pass (//experiments:*_launch_tests).

Parity tests against the reference (tag "reference") are left out: they need the pinned
reference environment (`--config=reference`). experiments/model_tests_test.py checks this
table against the packages' BUILD files, so a new test there fails until it is added here.
"""

MODEL_PACKAGE_TESTS = {
    "//models/config": [
        "//models/config:configurable_test",
        "//models/config:serialization_test",
        "//models/config:lint",
    ],
    "//models/modalities": [
        "//models/modalities:modalities_test",
        "//models/modalities:samples_test",
        "//models/modalities:lint",
    ],
    "//models/nn": [
        "//models/nn:encodings_test",
        "//models/nn:patch_embed_test",
        "//models/nn:attention_test",
        "//models/nn:blocked_attention_test",
        "//models/nn:onednn_linear_test",
        "//models/nn:precision_test",
        "//models/nn:varlen_test",
        "//models/nn:sequence_test",
        "//models/nn:lint",
    ],
    "//models/encoder": [
        "//models/encoder:encoder_test",
        "//models/encoder:per_modality_projection_test",
        "//models/encoder:lint",
    ],
    "//models/predictor": [
        "//models/predictor:predictor_test",
        "//models/predictor:per_modality_output_test",
        "//models/predictor:lint",
    ],
    "//models/latent_mim": [
        "//models/latent_mim:latent_mim_test",
        "//models/latent_mim:sizes_test",
        "//models/latent_mim:lint",
    ],
    "//models/masking": [
        "//models/masking:masking_test",
        "//models/masking:random_space_time_test",
        "//models/masking:modality_cross_test",
        "//models/masking:with_decode_test",
        "//models/masking:lint",
    ],
    "//models/losses": [
        "//models/losses:patch_discrimination_test",
        "//models/losses:info_nce_test",
        "//models/losses:losses_test",
        "//models/losses:lint",
    ],
    "//models/data": [
        "//models/data:h5_format_test",
        "//models/data:normalize_test",
        "//models/data:crop_test",
        "//models/data:dataset_test",
        "//models/data:fields_test",
        "//models/data:spectra_test",
        "//models/data:synthetic_test",
        "//models/data:make_synthetic_test",
        "//models/data:sampler_test",
        "//models/data:collate_test",
        "//models/data:loader_test",
        "//models/data:masked_loader_test",
        "//models/data:lint",
    ],
    "//models/train": [
        "//models/train:optim_test",
        "//models/train:distributed_test",
        "//models/train:rng_test",
        "//models/train:checkpoint_test",
        "//models/train:run_dir_test",
        "//models/train:train_module_test",
        "//models/train:trainer_test",
        "//models/train:pretrain_test",
        "//models/train:resume_test",
        "//models/train:ddp_test",
        "//models/train:lint",
    ],
    "//models/train/callbacks": [
        "//models/train/callbacks:checkpointer_test",
        "//models/train/callbacks:config_saver_test",
        "//models/train/callbacks:metrics_logger_test",
        "//models/train/callbacks:progress_test",
        "//models/train/callbacks:wandb_logger_test",
        "//models/train/callbacks:loss_plot_test",
        "//models/train/callbacks:lint",
    ],
    "//models/eval": [
        "//models/eval:metrics_test",
        "//models/eval:knn_test",
        "//models/eval:linear_probe_test",
        "//models/eval:embeddings_test",
        "//models/eval:landcover_test",
        "//models/eval:geobench_test",
        "//models/eval:evaluator_test",
        "//models/eval:callback_test",
        "//models/eval:lint",
    ],
}

# What every experiment builds on: the shared recipe uses all of them.
CORE_MODEL_PACKAGES = [
    "//models/config",
    "//models/modalities",
    "//models/nn",
    "//models/encoder",
    "//models/predictor",
    "//models/latent_mim",
    "//models/masking",
    "//models/losses",
    "//models/data",
    "//models/train",
    "//models/train/callbacks",
    "//models/eval",
]
