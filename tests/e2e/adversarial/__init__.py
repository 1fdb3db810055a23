"""Adversarial catalogue: bad inputs against a real server, each with its exact outcome.

Four catalogues, each a list of small dataclasses (an id, the attack, the outcome the
contract fixes), run against the shared server of every backend:

- `HANDSHAKES`: channel handshakes with forged, expired, not-yet-valid, wrong-algorithm,
  oversized and used credentials, tampered and fixated cookies, foreign origins and
  malformed item ids. Outcome: HTTP 101, then close 1008 with the exact reason.
- `REQUESTS`: REST calls with the same credentials, malformed ids and query values,
  SQL injection in every field and oversized bodies. Outcome: the exact status (and
  the field a 422 names); after each, the database still answers.
- `FRAMES`: frames sent on an open channel: binary, oversized, invalid JSON, wrong
  fields, bad refreshes. Outcome: an `error` frame with the exact code (the socket
  stays open) or the exact close code.
- `RAW_FRAMES`: frames the `websockets` client refuses to send (invalid UTF-8 text,
  unmasked, reserved opcode), written byte by byte on a raw socket.

Scenario tests follow: a publish flood on a rate-limited server, a client that never
reads, session fixation, and SQL injection through every field followed by a full
round trip through the database.

"""
