"""Names that become path components, and run directories that must not lead outside themselves.

A run writes under <output_dir>/<run_name>/, with directories named after rewards and variants. A name such as
`..`, `a/../../b` or an absolute path would put (and, on a re-run, replace) files outside the run directory, and
a symlink inside the run directory would do the same silently. Both are refused when the config is read.
"""
from __future__ import annotations

import os
from pathlib import Path

# Characters that split or leave a path component on any platform, and NUL, which the OS refuses anyway.
_SEPARATORS = ("/", "\\", "\x00")


def path_component_problem(name: str) -> str | None:
    """Why `name` cannot be one directory name inside a run directory, or None when it can."""
    if not name or not name.strip():
        return "is empty"
    if name in (".", ".."):
        return "names the parent directory" if name == ".." else "names the directory itself"
    if any(sep in name for sep in _SEPARATORS) or os.path.isabs(name):
        return "contains a path separator"
    return None


def check_path_component(name: str) -> str:
    """For pydantic validators: `name` unchanged, or a ValueError saying why it cannot be a directory name."""
    problem = path_component_problem(name)
    if problem is not None:
        raise ValueError(f"{name[:60]!r} {problem}; the name becomes one directory of the run, so use letters, "
                         "digits, '_', '-' or '.'")
    return name


def symlink_leaving(root: Path) -> tuple[Path, Path] | None:
    """(link, target) of the first symlink at or under `root` whose target lies outside `root`, or None.

    Directories above `root` may be symlinks (a runs/ directory on another disk is fine); `root` itself and what
    lies in it may not, since the run writes there. A missing `root` has nothing to check."""
    root = Path(root)
    if root.is_symlink():
        return root, Path(os.path.realpath(root))
    if not root.is_dir():
        return None
    real_root = Path(os.path.realpath(root))
    for directory, dirs, files in os.walk(root, followlinks=False):
        for entry in dirs + files:
            path = Path(directory) / entry
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if target != real_root and real_root not in target.parents:
                    return path, target
    return None


def check_run_dir(run_dir: Path, source: str, error: type[Exception]) -> None:
    """Nothing the run writes may lead outside its directory: an existing run directory that is a symlink, or a
    symlink inside it pointing elsewhere, is refused (a re-run would write, and replace, files there)."""
    leaving = symlink_leaving(run_dir)
    if leaving is not None:
        link, target = leaving
        raise error(f"{source}: {link} is a symlink to {target}, outside the run directory {run_dir}; remove the "
                    "link (to keep runs on another disk, set output_dir there)")
