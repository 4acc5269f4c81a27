"""Train: fine-tune on the token blocks and register a model version (stage.py).

loop.py (the training loop, read top to bottom), checkpoints.py (resume a killed run), distributed.py
(DDP under torchrun), promotion.py (when a version becomes latest), report.py (loss curve,
TensorBoard), params.py (TrainParams).
"""
