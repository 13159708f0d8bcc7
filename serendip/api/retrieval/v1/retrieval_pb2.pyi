from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_SOURCE_UNSPECIFIED: _ClassVar[ItemSource]
    ITEM_SOURCE_RELEVANCE: _ClassVar[ItemSource]
    ITEM_SOURCE_NOVEL_INTEREST: _ClassVar[ItemSource]
    ITEM_SOURCE_COLD_START: _ClassVar[ItemSource]

class RecordStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_STATUS_UNSPECIFIED: _ClassVar[RecordStatus]
    RECORD_STATUS_HIT: _ClassVar[RecordStatus]
    RECORD_STATUS_MISS: _ClassVar[RecordStatus]
    RECORD_STATUS_STALE: _ClassVar[RecordStatus]
    RECORD_STATUS_CORRUPT: _ClassVar[RecordStatus]
    RECORD_STATUS_STORE_UNAVAILABLE: _ClassVar[RecordStatus]
ITEM_SOURCE_UNSPECIFIED: ItemSource
ITEM_SOURCE_RELEVANCE: ItemSource
ITEM_SOURCE_NOVEL_INTEREST: ItemSource
ITEM_SOURCE_COLD_START: ItemSource
RECORD_STATUS_UNSPECIFIED: RecordStatus
RECORD_STATUS_HIT: RecordStatus
RECORD_STATUS_MISS: RecordStatus
RECORD_STATUS_STALE: RecordStatus
RECORD_STATUS_CORRUPT: RecordStatus
RECORD_STATUS_STORE_UNAVAILABLE: RecordStatus

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "k", "exploration_ratio", "recent_item_ids", "exclude_item_ids")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_RATIO_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    exploration_ratio: float
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., exploration_ratio: _Optional[float] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "source", "cluster_id", "cluster_label", "title")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_LABEL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    source: ItemSource
    cluster_id: int
    cluster_label: str
    title: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., source: _Optional[_Union[ItemSource, str]] = ..., cluster_id: _Optional[int] = ..., cluster_label: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class NovelInterest(_message.Message):
    __slots__ = ("cluster_id", "label", "rationale", "score")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    cluster_id: int
    label: str
    rationale: str
    score: float
    def __init__(self, cluster_id: _Optional[int] = ..., label: _Optional[str] = ..., rationale: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "novel_interests", "record_status", "bundle_id", "novel_slots", "unknown_recent_items")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NOVEL_INTERESTS_FIELD_NUMBER: _ClassVar[int]
    RECORD_STATUS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    NOVEL_SLOTS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_RECENT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    novel_interests: _containers.RepeatedCompositeFieldContainer[NovelInterest]
    record_status: RecordStatus
    bundle_id: str
    novel_slots: int
    unknown_recent_items: int
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., novel_interests: _Optional[_Iterable[_Union[NovelInterest, _Mapping]]] = ..., record_status: _Optional[_Union[RecordStatus, str]] = ..., bundle_id: _Optional[str] = ..., novel_slots: _Optional[int] = ..., unknown_recent_items: _Optional[int] = ...) -> None: ...

class BatchRecommendRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RecommendRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RecommendRequest, _Mapping]]] = ...) -> None: ...

class BatchRecommendResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[RecommendResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[RecommendResponse, _Mapping]]] = ...) -> None: ...

class ReloadBundleRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class ReloadBundleResponse(_message.Message):
    __slots__ = ("bundle_id", "previous_bundle_id", "changed", "load_seconds")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    previous_bundle_id: str
    changed: bool
    load_seconds: float
    def __init__(self, bundle_id: _Optional[str] = ..., previous_bundle_id: _Optional[str] = ..., changed: _Optional[bool] = ..., load_seconds: _Optional[float] = ...) -> None: ...

class GetServingInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServingInfo(_message.Message):
    __slots__ = ("bundle_id", "bundle_path", "n_items", "n_clusters", "index_device", "dim")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    N_ITEMS_FIELD_NUMBER: _ClassVar[int]
    N_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    INDEX_DEVICE_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    bundle_path: str
    n_items: int
    n_clusters: int
    index_device: str
    dim: int
    def __init__(self, bundle_id: _Optional[str] = ..., bundle_path: _Optional[str] = ..., n_items: _Optional[int] = ..., n_clusters: _Optional[int] = ..., index_device: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...
