"""tools/images.py's pure helpers (the image builds themselves are in test_images.py)."""

from __future__ import annotations

from types import ModuleType

import pytest
from fixtures.tools import load_tool


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("images")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0B", 0),
        ("999B", 999),
        ("512kB", 512_000),
        ("80.55MB", 80_550_000),
        ("12.7GB", 12_700_000_000),
    ],
)
def test_sizes_as_docker_prints_them(tool: ModuleType, text: str, size: int) -> None:
    assert tool.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12", "1.2 GiB", "-1B", "1,5MB"])
def test_unreadable_sizes_are_refused_with_the_text(tool: ModuleType, text: str) -> None:
    with pytest.raises(tool.ImageBuildError, match="size"):
        tool.parse_size(text)


def test_every_planned_image_gets_its_own_label_value(tool: ModuleType) -> None:
    """The prune selects by the label key; the value names the image, never a parent's."""
    labels = [image.label for image in tool.plan(tool.BUILDER_ARCHS, local_infra=False)]
    assert labels == [
        "runtime",
        "scheduler",
        "fetcher",
        "signer",
        "indexer",
        *(f"builder-{arch}" for arch in tool.BUILDER_ARCHS),
    ]
