"""Sphinx configuration of chainrule's documentation site.

Built in CI with warnings as errors, against the installed package (autodoc
imports ``chainrule``, so the pages describe the code that was built):

    pip install '.[docs]'
    sphinx-build -W --keep-going -b html docs build/docs

The pages are Markdown (MyST); the API pages pull in the numpydoc docstrings.
"""

import chainrule

project = "chainrule"
author = "The chainrule developers"
copyright = "the chainrule developers"
release = chainrule.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# Headings get anchors (for links like math.md#softmax-and-...) down to level 3.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# Every reference must resolve: with -W a dangling one fails the build.
nitpicky = True
nitpick_ignore_regex = [
    # numpydoc's type fields name things that have no page here (NumPy's,
    # scikit-learn's and onnx's types, and plain words such as "optional").
    ("py:class", r"(numpy|np|onnx|sklearn|os|pathlib)\..*"),
    ("py:class", r"(array-like|array_like|optional|default.*|callable|.*\(.*|sequence of .*|iterable)"),
    # Private bases (the estimators' shared _BaseSGD) have no page of their own.
    ("py:class", r"chainrule\.(\w+\.)?_\w+"),
    ("py:class", r"(int|float|str|bytes|bool|dict|list|tuple|None|object)( or .*)?"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures show the defaults; the types are in the numpydoc sections

numpydoc_show_class_members = False  # autodoc lists them (members: True)
numpydoc_xref_param_type = False
# numpydoc checks every docstring it renders; with -W a failure fails the
# build. GL08: no docstring; PR01/PR02: a parameter missing from, or unknown
# to, Parameters; RT01: no Returns; EX01: no Examples.
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "RT01", "EX01"}
# Not checked: properties, constants and the scikit-learn estimators' inherited methods
# (get_params, set_params, score, ...: scikit-learn's own docstrings).
numpydoc_validation_exclude = {
    r"\.__init__$",
    # Properties and constants: one line each; their classes' examples show them.
    r"^chainrule\.Network\.(layer_sizes|activations|loss|dtype|n_params|weights|biases)$",
    r"^chainrule\.optim\.Optimizer\.(steps|epochs)$",
    r"^chainrule\.onnx\.DEFAULT_OPSET$",
    r"\.(get_params|set_params|score|get_metadata_routing|set_fit_request|set_partial_fit_request|"
    r"set_score_request|set_output|fit_predict)$",
}

html_theme = "alabaster"
html_title = f"chainrule {release}"
html_static_path = []
