"""commctl: the operator's command line client of the Commissaire REST API (seed chapter 6).

It talks to the server over HTTP only and imports nothing from the server's
packages, so it can be installed on an operator's laptop on its own.
"""

__version__ = "0.2.0"
