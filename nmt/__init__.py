"""nmt: recurrent sequence-to-sequence translation after Sutskever, Vinyals & Le (2014).

    from nmt import Translator
    Translator.load("runs/quickstart/run").translate(["three hundred and two"])
"""

__version__ = "0.1.0"
__all__ = ["Translator", "Translation", "DecodeOptions", "__version__"]


def __getattr__(name: str):
    """The public API, imported on first use (importing torch takes a second; the CLI's argument
    checks should not wait for it)."""
    if name in ("Translator", "Translation"):
        from nmt.decode import translate

        return getattr(translate, name)
    if name == "DecodeOptions":
        from nmt.config import DecodeOptions

        return DecodeOptions
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
