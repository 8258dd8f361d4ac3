"""Fetch the CauGym and CaLM-Lite files from their GitHub repositories into the layout the loaders read."""
import pathlib
import urllib.request

from tqdm import tqdm

from caujax.data import calm, caugym

CAUGYM_REPO = "OpenCausaLab/CauGym"
CALM_REPO = "OpenCausaLab/CaLM"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{ref}/{path}"   # ref HEAD = the default branch


def plan(dest: pathlib.Path, ref: str = "HEAD") -> list[tuple[str, pathlib.Path]]:
    """(url, local path) for every file: CauGym under dest/caugym, CaLM basic+natural under dest/calm."""
    files = [(RAW_URL.format(repo=CAUGYM_REPO, ref=ref, path=upstream), dest / "caugym" / local)
             for local, upstream in caugym.FILES.values()]
    for kind in calm.KINDS:
        files += [(RAW_URL.format(repo=CALM_REPO, ref=ref, path=calm.upstream_path(task, kind)),
                   dest / "calm" / calm.file_name(task, kind)) for task in calm.tasks(kind)]
    files.append((RAW_URL.format(repo=CALM_REPO, ref=ref, path="LICENSE"), dest / "calm" / "LICENSE"))
    return files


def fetch(url: str, path: pathlib.Path, timeout_s: float = 60.0) -> int:
    """Download url to path atomically (a partial file never takes the real name); returns the byte count.
    Raises ValueError when the server returns a Git LFS pointer instead of the file (the CLI prints it on one line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as out:
        size = 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            size += len(chunk)
    with open(tmp, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):      # the repo stores some files in LFS; raw URLs give pointers
        tmp.unlink()
        raise ValueError(f"{url} is a Git LFS pointer, not the data; fetch it with git lfs instead")
    tmp.replace(path)
    return size


def download(dest: str | pathlib.Path, ref: str = "HEAD", force: bool = False) -> pathlib.Path:
    """Fetch every file not already present (all of them with force). Prints where to point the env vars."""
    dest = pathlib.Path(dest)
    todo = [(url, path) for url, path in plan(dest, ref) if force or not path.exists()]
    total = 0
    for url, path in tqdm(todo, desc="download", unit="file"):
        total += fetch(url, path)
    print(f"fetched {len(todo)} files ({total / 1e6:.1f} MB) into {dest}\n"
          f"export CAUGYM_DIR={dest / 'caugym'} CALM_DIR={dest / 'calm'}")
    return dest
