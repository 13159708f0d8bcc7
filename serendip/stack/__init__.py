"""The local stack (`serendip up`), the demo page and the distributed-refresh engine.

Core code: it starts the services only as subprocesses through the `serendip` CLI and talks to them
only through the protos in `serendip.api`; it never imports a service package.
"""
