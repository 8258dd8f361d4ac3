"""caujax: JAX-native post-training of LLMs into causal reasoners."""
import logging


class _NoTorchNotice(logging.Filter):
    """Drops transformers' "PyTorch was not found. Models won't be available ..." notice, and nothing else.

    caujax uses transformers for tokenizers and configs only, and its plain install (`pip install -e .`, no test
    extra) has no torch, so that notice would open every command with a false alarm. transformers/__init__.py emits
    it once at import, through `logger.warning_advice` on the "transformers" logger itself; a filter on that logger
    sees exactly the records logged there (not its children's), and every entry point imports this package first.
    TRANSFORMERS_NO_ADVISORY_WARNINGS or TRANSFORMERS_VERBOSITY would silence other advice and warnings too."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("PyTorch was not found.")


_transformers_logger = logging.getLogger("transformers")
if not any(type(f).__name__ == "_NoTorchNotice" for f in _transformers_logger.filters):   # none again on a reload
    _transformers_logger.addFilter(_NoTorchNotice())


def plain_warnings() -> None:
    """For the command-line entry points: print a warning as one `warning: <message>` line. The default format adds
    our file, line and source line, which tell a user nothing (what to do is in the message); library code still
    raises ordinary warnings, which tests and callers can catch or filter."""
    import warnings

    warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"warning: {message}\n"
