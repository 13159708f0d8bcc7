from serendip.store.history import push_history, read_history, seed_histories, user_histories
from serendip.store.keys import history_key, record_key
from serendip.store.record import Interest, Record, RecordError, decode_record, encode_record
from serendip.store.server import RedisServer, find_redis_server

__all__ = [
    "Interest",
    "Record",
    "RecordError",
    "RedisServer",
    "decode_record",
    "encode_record",
    "find_redis_server",
    "history_key",
    "push_history",
    "read_history",
    "record_key",
    "seed_histories",
    "user_histories",
]
