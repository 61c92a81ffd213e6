"""The request body cap, in the app.

The server's worker (commissaire_http.worker) already answers 413 before a
request reaches a thread; this middleware holds the same line for the app
wherever it runs (tests, another WSGI server), before authentication so that
no large body is ever read.
"""
from __future__ import annotations

import falcon

from commissaire import errors


def too_large(limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"the request body is larger than {limit} bytes "
                                  "(the server's max-body-size)")


class BodyLimit:
    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        length = req.content_length
        if length is not None and length > self.max_body_size:
            raise too_large(self.max_body_size)
