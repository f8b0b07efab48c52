"""The plada exception tree. Catch at the edge where you can act; messages name the field or file.

PladaError
├── PayloadError                  a task payload cannot be trusted or decoded
│   ├── PayloadDecodeError        not CBOR, wrong structure, wrong type, unknown codec or version
│   ├── PayloadLimitError         a declared or actual size is over a decode bound
│   ├── PayloadValueError         a field is out of range (index >= N, duplicate index, label >= C)
│   ├── PayloadSignatureError     bad signature, unsigned or unknown key
│   ├── PayloadCorpusError        payload refers to another corpus than the device holds
│   ├── PayloadExpiredError       expires_at is in the past
│   └── ChunkError                a chunk or chunk manifest is malformed or fails its hash
├── KeyFileError                  a key file is missing, unreadable or not an Ed25519 key
├── CorpusError                   the reference corpus is missing, corrupt or not the expected one
│   ├── CorpusNotFoundError       no corpus at the path, or a shard is missing
│   ├── CorpusCorruptError        a shard or image does not match its manifest hash / size
│   ├── CorpusMismatchError       fingerprint differs from what was expected
│   └── CorpusBuildError          an importer cannot read its input
├── ImageError                    an image file cannot be used
│   ├── ImageDecodeError          not an image, truncated or corrupt
│   └── ImageTooLargeError        it declares more pixels than limits.MAX_IMAGE_PIXELS
├── HeadTrainingError             head training got unusable inputs (empty set, bad shapes)
└── EncoderSpecError              a bad encoder spec string or exported-encoder sidecar (.json)
"""


class PladaError(Exception):
    """Root of every error raised by the plada package."""


class PayloadError(PladaError):
    """A task payload cannot be trusted or decoded."""


class PayloadDecodeError(PayloadError):
    """Not CBOR, wrong structure, wrong type, unknown codec or format version."""


class PayloadLimitError(PayloadError):
    """A declared or actual size is over a decode bound."""


class PayloadValueError(PayloadError):
    """A field is out of its allowed range."""


class PayloadSignatureError(PayloadError):
    """The signature is invalid, missing, or made with a key that is not trusted."""


class PayloadCorpusError(PayloadError):
    """The payload refers to a different reference corpus than the one held here."""


class PayloadExpiredError(PayloadError):
    """The payload's expires_at is in the past."""


class ChunkError(PayloadError):
    """A chunk or chunk manifest is malformed or fails its hash check."""


class KeyFileError(PladaError):
    """A key file is missing, unreadable, or not an Ed25519 key."""


class CorpusError(PladaError):
    """The reference corpus is missing, corrupt, or not the expected one."""


class CorpusNotFoundError(CorpusError):
    """No corpus at the path, or one of its shards is missing."""


class CorpusCorruptError(CorpusError):
    """A shard or image does not match the hash or size in the manifest."""


class CorpusMismatchError(CorpusError):
    """The corpus fingerprint differs from the expected one."""


class CorpusBuildError(CorpusError):
    """An importer cannot read its input."""


class ImageError(PladaError):
    """An image file cannot be used."""


class ImageDecodeError(ImageError):
    """Not an image, or truncated or corrupt."""


class ImageTooLargeError(ImageError):
    """The image declares more pixels than the decode bound allows."""


class HeadTrainingError(PladaError):
    """Head training got unusable inputs."""


class EncoderSpecError(PladaError, ValueError):
    """A bad encoder spec string (`lite0-64-int8`) or exported-encoder sidecar (.json)."""
