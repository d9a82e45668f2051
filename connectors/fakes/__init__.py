"""Provides faithful fakes of the APIs replywatch polls: real aiohttp applications.

Each fake serves its API's real routes, auth, pagination, payload shapes and rate-limit
behaviour from an in-memory world that tests and the demo's traffic model fill. They
are used by the test suite and by ``replywatch demo``; they are never mocks of our code.
"""
