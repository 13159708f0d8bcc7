"""The online retrieval service: gRPC `Recommend` steered by the novel-interest records in Redis."""
