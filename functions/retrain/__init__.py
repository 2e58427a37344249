"""The retraining workflow's steps as plain functions (no scikit-learn, no pandas): build the
dataset, gate, register, deploy, verify, notify, roll back. Step Functions runs them through
handlers.py; the local runtime calls them directly (local_runtime/retrain.py)."""
