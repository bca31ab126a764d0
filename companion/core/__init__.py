"""The core layer: the exact Gaussian-mixture laboratory, schedules, metrics, networks, the training
loop, data, and the sample-quality protocol. It imports nothing else from ``companion``.
"""
