"""Offline evaluation: the history/future split, serendipity metrics, proposer replay, reports."""
