"""An authentication plugin in this repository's first style: `authenticate(req)`
answers True or False, and says nothing of who the caller is. Admits a request
with the header X-Old: yes."""
from __future__ import annotations

import falcon

from commissaire_http.authentication import Authenticator


class OldStylePlugin(Authenticator):
    def authenticate(self, req: falcon.Request) -> bool:
        return req.get_header("X-Old") == "yes"


PluginClass = OldStylePlugin
