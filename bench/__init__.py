"""Side-by-side benchmark of sqsbus and Kombu's own SQS transport on a local endpoint.

``python -m bench`` (or ``python bench/run.py``) runs every scenario for both transports, each
against a fresh embedded moto endpoint, prints a table and saves JSON under ``bench/results/``.
See ``bench/README.md``.
"""
