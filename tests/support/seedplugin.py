"""An authentication plugin written to the seed's contract (its chapter
"Authentication Plugins"): `authenticate(environ, start_response)` answering True,
False, or a WSGI answer of its own. Admits a request whose X-Seed header is the
configured password; answers "418 I'm a teapot" itself to a wrong one."""
from commissaire_http.authentication import Authenticator


class SeedStylePlugin(Authenticator):
    def __init__(self, password="open-sesame"):
        self.password = password

    def authenticate(self, environ, start_response):
        given = environ.get("HTTP_X_SEED")
        if given is None:
            return False
        if given == self.password:
            return True
        start_response("418 I'm a teapot", [("content-type", "text/plain")])
        return [bytes("Whiiiiieee", "utf8")]


PluginClass = SeedStylePlugin
