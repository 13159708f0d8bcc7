"""The demo page: pick a user, see their recent posters, novel interests with reasons, and the
recommended posters marked relevance / novel. Served by a small Python HTTP server that calls the
retrieval service over gRPC (stubs from ``serendip.api``) and reads recent histories from Redis."""
