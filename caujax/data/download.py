"""Fetch the CauGym, CaLM-Lite, CLadder and CausalProbe files into the layout the loaders read.

CauGym, CaLM and CausalProbe come from their GitHub repositories as raw files; CLadder from its Hugging Face
dataset (causal-nlp/CLadder, split full_v1.5_default, through `datasets`), written as cladder/cladder-v1.5.json.
CausalProbe has no licence (its paper allows non-profit use only; the BBC and The Guardian own the source texts),
so it is fetched only when asked for by name.
"""
import json
import pathlib
import urllib.error
import urllib.request

from tqdm import tqdm

from caujax.data import calm, caugym, causalprobe, cladder

CAUGYM_REPO = "OpenCausaLab/CauGym"
CALM_REPO = "OpenCausaLab/CaLM"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{ref}/{path}"   # ref HEAD = the default branch
CLADDER_DATASET = "causal-nlp/CLadder"
CLADDER_SPLIT = "full_v1.5_default"          # all 10,112 v1.5 questions
SOURCES = ("caugym", "calm", "cladder", "causalprobe")
DEFAULT_SOURCES = ("caugym", "calm")


def plan(dest: pathlib.Path, ref: str = "HEAD", sources=DEFAULT_SOURCES) -> list[tuple[str, pathlib.Path]]:
    """(url, local path) of every raw file: CauGym under dest/caugym, CaLM basic+natural under dest/calm,
    CausalProbe E/H/M under dest/causalprobe (CLadder is no raw file: fetch_cladder)."""
    files = []
    if "caugym" in sources:
        files += [(RAW_URL.format(repo=CAUGYM_REPO, ref=ref, path=upstream), dest / "caugym" / local)
                  for local, upstream in caugym.FILES.values()]
    if "calm" in sources:
        for kind in calm.KINDS:
            files += [(RAW_URL.format(repo=CALM_REPO, ref=ref, path=calm.upstream_path(task, kind)),
                       dest / "calm" / calm.file_name(task, kind)) for task in calm.tasks(kind)]
        files.append((RAW_URL.format(repo=CALM_REPO, ref=ref, path="LICENSE"), dest / "calm" / "LICENSE"))
    if "causalprobe" in sources:
        files += [(RAW_URL.format(repo=causalprobe.REPO, ref=ref,
                                  path=f"{causalprobe.UPSTREAM_DIR}/{causalprobe.file_name(s)}"),
                   dest / "causalprobe" / causalprobe.file_name(s)) for s in causalprobe.SUBSETS]
    return files


def fetch_cladder(dest: pathlib.Path, revision: str | None = None) -> int:
    """CLadder v1.5 from the Hugging Face hub through `datasets`, written atomically as a JSON array to
    dest/cladder/cladder-v1.5.json (the first name caujax.data.cladder looks for); returns the row count. The
    written file is read back with load_cladder before it takes its name, so a changed upstream schema fails here."""
    import datasets

    rows = datasets.load_dataset(CLADDER_DATASET, split=CLADDER_SPLIT, revision=revision).to_list()
    path = dest / "cladder" / cladder.FILES[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.json")          # a name the loader never picks from a directory
    tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    cladder.load_cladder(tmp)
    tmp.replace(path)
    return len(rows)


def fetch(url: str, path: pathlib.Path, timeout_s: float = 60.0) -> int:
    """Download url to path atomically (a partial file never takes the real name, and nothing is created when the
    server cannot be reached); returns the byte count. Raises OSError naming the URL when it cannot be fetched,
    ValueError when the server returns a Git LFS pointer instead of the file (the CLI prints either on one line)."""
    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                size = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot fetch {url}: {getattr(e, 'reason', e)} (no network? the file goes to {path})") from None
    with open(tmp, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):      # the repo stores some files in LFS; raw URLs give pointers
        tmp.unlink()
        raise ValueError(f"{url} is a Git LFS pointer, not the data; fetch it with git lfs instead")
    tmp.replace(path)
    return size


ENV_VARS = {"caugym": "CAUGYM_DIR", "calm": "CALM_DIR", "cladder": "CLADDER_DIR", "causalprobe": "CAUSALPROBE_DIR"}


def download(dest: str | pathlib.Path, ref: str = "HEAD", force: bool = False, sources=DEFAULT_SOURCES
             ) -> pathlib.Path:
    """Fetch every file of `sources` (a subset of SOURCES) not already present (all of them with force); `ref` is
    the git ref of the GitHub repositories and the hub revision of CLadder (HEAD: the default branch). Prints
    where to point the environment variables. Raises ValueError for an unknown source."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown data source(s) {unknown}; choose from {', '.join(SOURCES)}")
    dest = pathlib.Path(dest)
    todo = [(url, path) for url, path in plan(dest, ref, sources) if force or not path.exists()]
    total = 0
    for url, path in tqdm(todo, desc="download", unit="file"):
        total += fetch(url, path)
    print(f"fetched {len(todo)} files ({total / 1e6:.1f} MB) into {dest}")
    if "cladder" in sources and (force or not (dest / "cladder" / cladder.FILES[0]).exists()):
        rows = fetch_cladder(dest, revision=None if ref == "HEAD" else ref)
        print(f"wrote {rows} CLadder questions from {CLADDER_DATASET} ({CLADDER_SPLIT}) to "
              f"{dest / 'cladder' / cladder.FILES[0]}")
    if "causalprobe" in sources:
        print("CausalProbe-2024 has no licence: its authors allow non-profit use only; the BBC and The Guardian "
              "own the articles it was made from")
    print("export " + " ".join(f"{ENV_VARS[s]}={dest / s}" for s in SOURCES if s in sources))
    return dest
