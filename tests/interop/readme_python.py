"""Run the README's Python verification snippet (the first ```python block of "Verifying the
token in your service", taken from README.md as written) against tokens from the running proxy.

stdin: {"readme": path, "keys": [[secret, encoding]], "tokens": [str], "audience": str|null,
        "issuer": str|null}
stdout: {"keys_hex": [hex of proxy_key(secret, encoding) for each], "users": [payload.user]}
Tokens are verified with the first key; any failure raises (exit 1).
"""
import json
import re
import sys

req = json.load(sys.stdin)
readme = open(req["readme"], encoding="utf-8").read()
section = readme.split("## Verifying the token in your service", 1)[1]
snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
ns = {}
exec(snippet, ns)  # defines proxy_key() and verify()
keys = [ns["proxy_key"](secret, encoding) for secret, encoding in req["keys"]]
users = [
    ns["verify"](t, keys[0], audience=req["audience"], issuer=req["issuer"])["payload"]["user"]
    for t in req["tokens"]
]
print(json.dumps({"keys_hex": [k.hex() for k in keys], "users": users}))
