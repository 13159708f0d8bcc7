from serendip.api.record.v1 import record_pb2 as _record_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RefreshUsersRequest(_message.Message):
    __slots__ = ("user_ids", "force")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    force: bool
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., force: _Optional[bool] = ...) -> None: ...

class RefreshUsersResponse(_message.Message):
    __slots__ = ("selected", "refreshed", "from_tuple", "fallback", "kept", "failed", "skipped", "seconds")
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    REFRESHED_FIELD_NUMBER: _ClassVar[int]
    FROM_TUPLE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    selected: int
    refreshed: int
    from_tuple: int
    fallback: int
    kept: int
    failed: int
    skipped: int
    seconds: float
    def __init__(self, selected: _Optional[int] = ..., refreshed: _Optional[int] = ..., from_tuple: _Optional[int] = ..., fallback: _Optional[int] = ..., kept: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class GetNovelInterestsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetNovelInterestsResponse(_message.Message):
    __slots__ = ("found", "expired", "record")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    found: bool
    expired: bool
    record: _record_pb2.NovelInterestRecord
    def __init__(self, found: _Optional[bool] = ..., expired: _Optional[bool] = ..., record: _Optional[_Union[_record_pb2.NovelInterestRecord, _Mapping]] = ...) -> None: ...
