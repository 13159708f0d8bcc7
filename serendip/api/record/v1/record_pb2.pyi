from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProposalSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_SOURCE_UNSPECIFIED: _ClassVar[ProposalSource]
    PROPOSAL_SOURCE_LLM: _ClassVar[ProposalSource]
    PROPOSAL_SOURCE_LLM_TUPLE: _ClassVar[ProposalSource]
    PROPOSAL_SOURCE_TRANSITION: _ClassVar[ProposalSource]
PROPOSAL_SOURCE_UNSPECIFIED: ProposalSource
PROPOSAL_SOURCE_LLM: ProposalSource
PROPOSAL_SOURCE_LLM_TUPLE: ProposalSource
PROPOSAL_SOURCE_TRANSITION: ProposalSource

class NovelInterest(_message.Message):
    __slots__ = ("cluster_id", "label", "score", "rationale", "embedding")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    label: str
    score: float
    rationale: str
    embedding: bytes
    def __init__(self, cluster_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., rationale: _Optional[str] = ..., embedding: _Optional[bytes] = ...) -> None: ...

class NovelInterestRecord(_message.Message):
    __slots__ = ("interests", "dim", "bundle_id", "model_id", "prompt_version", "created_at_ms", "expires_at_ms", "source", "history_fingerprint")
    INTERESTS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    interests: _containers.RepeatedCompositeFieldContainer[NovelInterest]
    dim: int
    bundle_id: str
    model_id: str
    prompt_version: str
    created_at_ms: int
    expires_at_ms: int
    source: ProposalSource
    history_fingerprint: int
    def __init__(self, interests: _Optional[_Iterable[_Union[NovelInterest, _Mapping]]] = ..., dim: _Optional[int] = ..., bundle_id: _Optional[str] = ..., model_id: _Optional[str] = ..., prompt_version: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., source: _Optional[_Union[ProposalSource, str]] = ..., history_fingerprint: _Optional[int] = ...) -> None: ...
