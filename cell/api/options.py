"""OPTIONS on every API path: 204 with `Allow` naming every method the path serves.

Litestar makes an OPTIONS handler per route itself, but when a path's handlers are registered one by one, the
one it keeps knows only the first handler's methods (OPTIONS /api/ledgers said POST, not GET). Registered first,
this one replaces it on every path and reads the path's methods from the finished app."""

from __future__ import annotations

import re

from litestar import Request, Response, route
from litestar.enums import HttpMethod

_TYPED = re.compile(r"\{(\w+):\w+\}")  # "{ledger_id:str}" in the app's map is "{ledger_id}" in a request's scope


def options_for(paths: list[str]):
    @route(paths, http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False)
    def options(request: Request) -> Response:
        allowed = getattr(request.app.state, "allowed_methods", None)
        if allowed is None:
            allowed = request.app.state.allowed_methods = {
                _TYPED.sub(r"{\1}", path): ", ".join(sorted(methods))
                for path, methods in request.app.route_handler_method_map.items()}
        return Response(None, status_code=204, headers={"Allow": allowed.get(request.scope["path_template"], "")})

    return options
