"""Lite-SRL training engine: model, data, pretraining, evaluation, CWB and the DHP runtime."""
