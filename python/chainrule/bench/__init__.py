"""The benchmark suite, shipped in the wheel: `python -m chainrule.bench --help`.

chainrule against the NumPy implementation of docs/math.md (numpy_mlp, also the
reference of the agreement check) and, where installed, PyTorch and
scikit-learn, on the workloads of `workloads`. Nothing here is imported by
`import chainrule`; torch and scikit-learn are imported only when measured.
"""
