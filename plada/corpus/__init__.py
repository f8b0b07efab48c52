"""The reference corpus: ordered images, manifest, fingerprint, random access, verify, build.

Everything a device or the builder needs is re-exported here; see format.py for the on-disk layout.
"""

from plada.corpus.build import ImageSource, build_corpus
from plada.corpus.derived import DerivedSource
from plada.corpus.format import Corpus, check_fingerprint
from plada.corpus.header import FORMAT_VERSION, ShardInfo
from plada.corpus.importers import (
    ArraySource,
    CorpusSource,
    DeferredImage,
    FileListSource,
    GeneratorSource,
    ImageFolderSource,
    idx_source,
    list_image_files,
    open_image_file,
    read_idx,
)
from plada.corpus.manifest import ManifestEntry, SourceInfo, pixel_digest
from plada.corpus.verify import VerifyProblem, VerifyReport
from plada.corpus.writer import CorpusWriter, encode_png, normalize_image

__all__ = [
    "FORMAT_VERSION",
    "ArraySource",
    "Corpus",
    "CorpusSource",
    "CorpusWriter",
    "DeferredImage",
    "DerivedSource",
    "FileListSource",
    "GeneratorSource",
    "ImageFolderSource",
    "ImageSource",
    "ManifestEntry",
    "ShardInfo",
    "SourceInfo",
    "VerifyProblem",
    "VerifyReport",
    "build_corpus",
    "check_fingerprint",
    "encode_png",
    "idx_source",
    "list_image_files",
    "normalize_image",
    "open_image_file",
    "pixel_digest",
    "read_idx",
]
