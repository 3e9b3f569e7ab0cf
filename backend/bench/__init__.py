"""In-process benchmarks of the backend's own layers: no guest, no daemon.

``python -m backend.bench.file`` measures the file: device's engines alone and
``python -m backend.bench.path`` the whole per-I/O Python path (vhost decoding, dm,
the device). They live in the backend, beside what they measure, because they build its
objects directly, which the QMP-driven rig in qmp_scenarios/ never does.
"""
