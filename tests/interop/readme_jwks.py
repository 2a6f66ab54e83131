"""Run the manual's JWKS verification snippet (the ```python block of "Rotating keys", taken from
docs/keys.md as written, with its JWKS_URL pointed at the running proxy) on tokens from the proxy.

stdin: {"readme": path, "jwks_url": str, "tokens": [str]}
stdout: {"users": [payload.user], "algs": [the header alg of each]}
Any token that does not verify raises (exit 1).
"""
import json
import re
import sys

import jwt

req = json.load(sys.stdin)
readme = open(req["readme"], encoding="utf-8").read()
section = readme.split("## Rotating keys", 1)[1]
snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
snippet, n = re.subn(r'JWKS_URL = "[^"]*"', "JWKS_URL = " + json.dumps(req["jwks_url"]), snippet)
assert n == 1, "the snippet sets JWKS_URL once"
ns = {}
exec(snippet, ns)  # defines verify()
users = [ns["verify"](t)["payload"]["user"] for t in req["tokens"]]
algs = [jwt.get_unverified_header(t)["alg"] for t in req["tokens"]]
print(json.dumps({"users": users, "algs": algs}))
