"""Bandwidth prediction: next-1 s and next-5 s rate of each link and class, with a confidence.

Light on purpose: importing this package loads neither onnxruntime nor torch.
The run-time API lives in `.runtime` (Predictor, onnxruntime), the pure
helpers in `.tracking` (ErrorTracker), `.anomaly` (AnomalyDetector),
`.capacity` (auto_capacity) and `.operations` (what the API layer calls);
`python -m anabranch.controller.predict train|evaluate` are the offline tools.
"""
