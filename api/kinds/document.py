"""`document`: a free JSON object, changed by JSON Patch (RFC 6902) operations."""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from api.kinds.base import Actor, Conflict, Invalid, JSONObject, Kind
from api.kinds.patch import apply_simple


class Document(Kind):
    name = "document"
    description = "A free JSON document, {} when created, changed by JSON Patch (RFC 6902)."
    change_field = "ops"

    def initial(self, owner: str) -> JSONObject:
        return {}

    def apply(self, state: JSONObject, change: Any, actor: Actor) -> JSONObject:
        if not isinstance(change, list) or not all(isinstance(op, dict) for op in change):
            raise Invalid("ops must be an array of JSON Patch operation objects")
        simple = apply_simple(state, change)
        if simple is not None:
            return simple
        try:
            patch = jsonpatch.JsonPatch(change)
            # Works on a copy: a patch that fails half-way leaves the state untouched.
            result = patch.apply(state, in_place=False)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise Conflict(f"test failed: {exc}") from exc
        except jsonpatch.InvalidJsonPatch as exc:
            raise Invalid(f"malformed operation: {exc}") from exc
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise Invalid(f"the patch does not apply: {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            # Malformed operations the library does not wrap (a non-string `op`, say).
            raise Invalid(f"malformed operation: {exc}") from exc
        if not isinstance(result, dict):
            raise Invalid("the state must remain a JSON object")
        return result
