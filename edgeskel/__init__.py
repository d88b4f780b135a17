"""edgeskel: ship trained skeleton action recognizers to edge devices.

Pipeline: load -> compress -> fine-tune -> export -> quantize -> validate -> report
(see docs/DESIGN.md). Every stage is a plain function the CLI, Makefile and Python API share.
"""

__version__ = "0.1.0"
