"""Directories written beside their target and renamed into place, so a kill mid-write never leaves a directory
that looks finished (exports, the demo's converted base, PEFT adapters)."""
import contextlib
import pathlib
import shutil


@contextlib.contextmanager
def staged_dir(path, *, owner: bool = True):
    """Yield `<path>.partial` (emptied first: a leftover of a killed write) to write into; when the block ends
    without an exception, the old `path` is removed and the staged directory renamed to it. `path` is therefore
    always either absent or complete, never half written (a kill between the removal and the rename leaves it
    absent, which the callers treat as not yet written: train's export marker, the demo's converted base). On an
    exception the staged directory is left for inspection and `path` is untouched.

    owner=False (every process but the writing one in a multi-host run): yields the same path, touches nothing."""
    path = pathlib.Path(path)
    staged = path.with_name(path.name + ".partial")
    if owner:
        shutil.rmtree(staged, ignore_errors=True)
    yield staged
    if owner:
        shutil.rmtree(path, ignore_errors=True)
        staged.rename(path)
