"""Whether the Hugging Face Hub can be reached, asked once per process (per `run_study` or
`run_worker` call, from Python) before the first load of a Hub id. On a machine without the Hub
and without HF_HUB_OFFLINE set, huggingface_hub tried each file the cache lacks 6 times over
about 25 s, printing 'Retrying in Ns' warnings at each try: an id the cache lacks failed only
after that, and one it holds took minutes (each optional file it lacks). Where no connection can
be made, the process reads the caches alone from then on (until the call ends)."""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import first_line

log = logging.getLogger(__name__)

_UNREACHABLE: list[str] = []  # why, once a try found that no connection to the Hub can be made
_ONLINE: list[tuple[Any, bool]] = []  # (module, setting) of each offline switch, as it was
_calls = 0  # how many per_call() blocks are open


def unreachable(url: str) -> str | None:
    """Why the Hub cannot be reached (`the Hub (https://huggingface.co) cannot be reached: ...`),
    trying `url` once, without retries or warnings, on the first call of the process; None where
    the user set HF_HUB_OFFLINE (nothing to ask) or the try made a connection (the Hub answered,
    or a read timed out on a slow network: the loads' own retries and errors apply).

    Unreachable (refused, no such host, connect timeout): huggingface_hub, transformers and
    datasets read their caches alone from then on, as with HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants, get_hf_file_metadata

    if _UNREACHABLE:
        return _UNREACHABLE[0]
    if constants.HF_HUB_OFFLINE:
        return None
    try:
        get_hf_file_metadata(url)
    except Exception as err:  # httpx's: no connection made
        if not {"ConnectError", "ConnectTimeout"} & {kind.__name__ for kind in type(err).__mro__}:
            return None
        _UNREACHABLE.append(f"the Hub ({constants.ENDPOINT}) cannot be reached: {first_line(err)}")
        _go_offline()
        log.info("%s; models and datasets are read from the Hugging Face cache alone "
                 "(HF_HUB_OFFLINE)", _UNREACHABLE[0])
        return _UNREACHABLE[0]
    return None


def _go_offline() -> None:
    """HF_HUB_OFFLINE for this process: huggingface_hub and transformers read its constant at each
    load; datasets copied it into its own config when imported."""
    import datasets
    from huggingface_hub import constants

    _ONLINE[:] = [(constants, constants.HF_HUB_OFFLINE), (datasets.config, datasets.config.HF_HUB_OFFLINE)]
    constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


@contextlib.contextmanager
def per_call() -> Iterator[None]:
    """One call of the Python API (`run_study`, `run_worker`): a Hub found unreachable in it is
    offline until it ends, then asked again by the next call. In a notebook the process outlives
    the call: the user's own Hugging Face loads, and ablate's next study once the network is
    back, read the caches alone for as long as the kernel ran."""
    global _calls
    _calls += 1
    try:
        yield
    finally:
        _calls -= 1
        if not _calls and _UNREACHABLE:
            for module, setting in _ONLINE:
                module.HF_HUB_OFFLINE = setting
            _ONLINE.clear()
            _UNREACHABLE.clear()


def cache_only() -> bool:
    """Whether the Hub libraries read their caches alone now: HF_HUB_OFFLINE set, or the Hub
    found unreachable during this call (what a hint may then list of the cache)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or _UNREACHABLE)


def cached_ids(kind: str) -> list[str]:
    """The Hub ids of the models (`kind` "model") or datasets ("dataset") the Hugging Face caches
    hold: HF_HUB_CACHE's `models--org--name` folders, and for datasets also HF_DATASETS_CACHE's
    `org___name` folders of prepared data (what `load_dataset` reads offline)."""
    from huggingface_hub import constants

    ids = set()
    prefix = f"{kind}s--"
    with contextlib.suppress(OSError):
        for folder in Path(constants.HF_HUB_CACHE).iterdir():
            if folder.name.startswith(prefix) and folder.is_dir():
                ids.add(folder.name[len(prefix):].replace("--", "/", 1))
    if kind == "dataset":
        import datasets

        with contextlib.suppress(OSError):
            for folder in Path(datasets.config.HF_DATASETS_CACHE).iterdir():
                # <cache>/<org>___<name>/<config>/<version>/<hash>/dataset_info.json
                if folder.is_dir() and next(folder.glob("*/*/*/dataset_info.json"), None):
                    ids.add(folder.name.replace("___", "/", 1))
    return sorted(ids)


def cached_configs(dataset: str) -> list[str]:
    """The configs of Hub dataset `dataset` that HF_DATASETS_CACHE holds prepared (where
    `load_dataset` reads them offline: `<org>___<name>/<config>/<version>/<hash>/`). A folder
    whose dataset_info.json names another config (`default-5f8e1c2a`: loaded with data_files or
    other parameters) is no config: load_dataset without those parameters does not read it."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    parts = dataset.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "___".join(parts)
    with contextlib.suppress(OSError):
        return sorted({info.parents[2].name for info in folder.glob("*/*/*/dataset_info.json")
                       if _config_of(info) in (None, info.parents[2].name)})
    return []


def _config_of(info: Path) -> str | None:
    """The config_name a prepared copy's dataset_info.json records; None where it cannot be read."""
    import json

    with contextlib.suppress(OSError, ValueError, AttributeError):
        name = json.loads(info.read_text(encoding="utf-8")).get("config_name")
        return name if isinstance(name, str) else None
    return None


def cache_hint(name: str, kind: str) -> str:
    """For a Hub id that could not be loaded: the cached id it is most likely a slip of (the
    organisation left out, as `all-MiniLM-L6-v2` or `sst2`; another case; a typo), as
    `; did you mean 'org/name' (the Hugging Face cache holds it)?`; offline, where nothing is close,
    the ids the cache holds. "" where the cache holds `name` itself (the revision or config is
    what failed) or nothing to name."""
    from huggingface_hub import constants

    address = re.match(r"(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/(datasets/)?([^/\s]+/[^/\s?#]+)",
                       name.strip())
    if address and (kind == "dataset") == bool(address.group(1)):  # the page's address, pasted
        return f"; give the Hub id {address.group(2)!r}, not the web address of its page"
    ids = cached_ids(kind)
    if name in ids:
        return ""
    lowered = {repo.lower(): repo for repo in ids}
    wanted = name.lower().strip("/")
    match = (lowered.get(wanted)
             or next((repo for low, repo in lowered.items() if low.rpartition("/")[2] == wanted), None)
             or next(iter(difflib.get_close_matches(wanted, list(lowered), n=1, cutoff=0.8)), None))
    if match:
        return f"; did you mean {lowered.get(match.lower(), match)!r} (the Hugging Face cache holds it)?"
    if not cache_only():
        return ""
    where = (f"the Hugging Face cache ({constants.HF_HUB_CACHE}) holds" if kind == "model" else
             "the Hugging Face caches hold")
    if not ids:
        return f"; {where} no {kind}s"
    shown = ", ".join(repr(repo) for repo in ids[:8])
    more = f" and {len(ids) - 8} more" if len(ids) > 8 else ""
    return f"; {where} the {kind}{'s' if len(ids) > 1 else ''} {shown}{more}"


def cached_snapshot(repo_folder: Path) -> Path | None:
    """The snapshot folder of a cache's `models--org--name` folder that holds a config.json: the
    one refs/main names (what the Hub id loads), else the one written last; None where none."""
    with contextlib.suppress(OSError):
        main = repo_folder / "snapshots" / (repo_folder / "refs" / "main").read_text().strip()
        if (main / "config.json").is_file():
            return main
    snapshots = []
    with contextlib.suppress(OSError):
        snapshots = [(config.stat().st_mtime, config.parent)
                     for config in (repo_folder / "snapshots").glob("*/config.json")]
    return max(snapshots)[1] if snapshots else None


def cached_revisions(name: str, kind: str = "model") -> dict[str, str]:
    """The revisions of Hub id `name` that HF_HUB_CACHE holds: each ref (branch, tag) → its commit,
    and each snapshot no ref names → itself."""
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"{kind}s--{name.replace('/', '--')}"
    revisions: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for ref in sorted((repo / "refs").rglob("*")):
            if ref.is_file():
                revisions[ref.relative_to(repo / "refs").as_posix()] = ref.read_text().strip()
    with contextlib.suppress(OSError):
        for snapshot in sorted((repo / "snapshots").iterdir()):
            if snapshot.name not in revisions.values():  # a ref's commit is named with the ref
                revisions[snapshot.name] = snapshot.name
    return revisions


def revision_hint(name: str, revision: str, kind: str = "model") -> str:
    """For a revision of a cached Hub id that could not be loaded: the cached commit it is the
    start of (`c9745ed`, as the Hub's pages show commits; a revision is a whole commit hash, a
    branch or a tag), or offline the revisions the cache holds."""

    revisions = cached_revisions(name, kind)
    if not revisions:
        return ""
    commits = sorted({commit for commit in revisions.values() if commit.startswith(revision.lower())})
    if len(revision) >= 4 and len(commits) == 1:
        return (f"; did you mean {commits[0]!r} (the Hugging Face cache holds that commit; a "
                "revision is a whole commit hash, a branch or a tag)?")
    if not cache_only():
        return ""
    shown = ", ".join(f"{ref!r}" + (f" (commit {commit})" if commit != ref else "")
                      for ref, commit in list(revisions.items())[:6])
    return f"; the Hugging Face cache holds {name} at {shown}"
