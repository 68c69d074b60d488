"""nmt: recurrent sequence-to-sequence translation after Sutskever, Vinyals & Le (2014)."""

__version__ = "0.1.0"
