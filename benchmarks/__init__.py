"""shapjax benchmarks: throughput against the model's ceiling, peers (shap, captum, lime), accuracy.

Run ``python -m benchmarks --help``; results go to ``benchmarks/results/``.
"""
