"""agegender: age and gender estimation from face photos, and a workbench to train your own."""

__version__ = "0.1.0"
