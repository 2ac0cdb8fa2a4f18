"""Shared pytest set-up: fixture plugins live in tests/helpers/ and are listed here.

Each tier's owner adds its plugin module with a one-line edit (keep the list sorted).
"""

pytest_plugins: list[str] = [
    "tests.helpers.cpu_budget",
    "tests.helpers.moto_server",
    "tests.helpers.rsync_harness",
    "tests.helpers.ssh_keys",
]
