"""Support code for the tests, the benchmarks and the dev tools (not shipped).

``agentproc``: a real agent process over HTTPS; ``sql``: SQL on a throwaway cluster;
``ui_harness``: the real temboard UI 7.11 in front of the agent, driven by Chromium.
Import it from the repository's root (``python -m bench.x``, ``python -m dev.ui_e2e``,
pytest).
"""
