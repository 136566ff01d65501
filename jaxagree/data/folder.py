"""``folder:PATH``: a folder of images, flat (unlabelled) or one sub-folder per class, decoded
with PIL in a thread pool (:class:`~jaxagree.data.stimuli.DecodedStimuli`)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from jaxagree.data.stimuli import DEFAULT_IMAGE_SIZE, DecodedStimuli, decode_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class FolderStimuli(DecodedStimuli):
    """A folder of images, flat (unlabelled) or one sub-folder per class.

    Ids are the paths relative to the folder; with sub-folders, labels index the sorted
    sub-folder names (the categories). With ``skip_bad``, every image is decoded once when the
    folder is opened and the ones that cannot be read (corrupt, truncated, or neither RGB nor
    greyscale) are left out and listed in ``skipped`` (path, reason); without it, the first bad
    image stops the run with its path.
    """

    def __init__(self, root: str | os.PathLike, *, image_size: int | None = DEFAULT_IMAGE_SIZE,
                 skip_bad: bool = False, workers: int | None = None):
        super().__init__(image_size, workers)
        root = Path(root)
        self.source = f"folder:{root}"
        if not root.is_dir():
            raise ValueError(f"{self.source}: no such folder")
        files = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=lambda p: p.relative_to(root).as_posix())
        if not files:
            raise ValueError(f"{self.source}: no images (looked for {' '.join(IMAGE_SUFFIXES)} files, "
                             "at the top level or in one sub-folder per class)")
        top = [p for p in files if p.parent == root]
        if top and len(top) != len(files):
            raise ValueError(f"{self.source}: images both at the top level (e.g. {top[0].name}) and in sub-folders; "
                             "use either a flat folder or one sub-folder per class")
        self.root = root
        self.skipped: list[tuple[str, str]] = []
        if skip_bad:
            files = self._keep_readable(files)
        self._files = files
        self._ids = [p.relative_to(root).as_posix() for p in files]
        if top:
            self._categories, self._labels = None, None
        else:
            classes = [p.relative_to(root).parts[0] for p in files]
            self._categories = sorted(set(classes))
            index = {name: i for i, name in enumerate(self._categories)}
            self._labels = np.array([index[c] for c in classes], np.int32)

    def _keep_readable(self, files: list[Path]) -> list[Path]:
        def problem(path: Path) -> str | None:
            try:
                decode_image(path, None, str(path))
                return None
            except ValueError as error:
                return str(error)

        problems = list(self._pool.map(problem, files))
        self.skipped = [(p.relative_to(self.root).as_posix(), why) for p, why in zip(files, problems) if why]
        kept = [p for p, why in zip(files, problems) if why is None]
        if not kept:
            raise ValueError(f"{self.source}: none of its {len(files)} images can be read; first: {self.skipped[0][1]}")
        return kept

    def _encoded(self, index: int) -> Path:
        return self._files[index]

    def fingerprint(self) -> str:
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        digest = hashlib.sha256(f"folder size={self.image_size}".encode())
        for path, name in zip(self._files, self._ids):
            stat = path.stat()
            digest.update(f"\n{name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]


__all__ = ["IMAGE_SUFFIXES", "FolderStimuli"]
