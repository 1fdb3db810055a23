"""Adversarial catalogue: bad inputs against a real server, each with its exact outcome.

Catalogues, each a list of small dataclasses (an id, the attack, the outcome the contract
fixes), run against the shared server of every backend:

- test_handshakes.py: channel handshakes with bad credentials, cookies, origins and item
  ids. Outcome: HTTP 101, then close 1008 with the exact reason.
- test_rest_access.py, test_rest_inputs.py: REST calls with the same credentials,
  malformed ids and query values, SQL injection in every field, oversized bodies.
  Outcome: the exact status (and the field a 422 names); after each, the database still
  answers.
- test_frames.py: frames on an open channel. Outcome: an `error` frame with the exact
  code (the socket stays open), an ack, or the exact close code.
- test_raw_frames.py: frames the `websockets` client refuses to send, byte by byte.

test_scenarios.py follows: a publish flood on a rate-limited server, a client that never
reads, session fixation, SQL injection through every field then a full round trip.
world.py holds what they share; rest.py the REST machinery.
"""
