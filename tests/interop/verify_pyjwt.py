"""Verify jwt-proxy tokens with PyJWT, an implementation independent of ours.

stdin: {"secret": str, "encoding": "text"|"hex"|"base64", "tokens": [str],
        "expect": {"users": [str], "ttl": int|null, "iss": str|null, "aud": str|null, "kid": str|null}}
stdout: {"verified": N, "claims": [...]}; exit 1 with a reason on any mismatch.
"""
import base64
import binascii
import datetime
import json
import re
import sys

import jwt  # PyJWT

req = json.load(sys.stdin)
secret, encoding = req["secret"], req["encoding"]
# Decode the key the way a Python service would, independently of the proxy's own decoder.
if encoding == "text":
    key = secret  # PyJWT uses a str secret as its UTF-8 bytes
elif encoding == "hex":
    key = binascii.unhexlify(secret)
else:
    key = base64.b64decode(secret)
exp = req["expect"]
today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
seen, out = set(), []
for token, user in zip(req["tokens"], exp["users"], strict=True):
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS512" and header["typ"] == "JWT", header
    assert header.get("kid") == exp.get("kid"), header
    options = {"require": ["iat", "jti"] + (["exp"] if exp.get("ttl") else [])}
    claims = jwt.decode(token, key, algorithms=["HS512"], options=options,
                        audience=exp.get("aud"), issuer=exp.get("iss"))
    assert isinstance(claims["iat"], int), claims
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"]), claims
    assert claims["jti"] not in seen, "duplicate jti"
    seen.add(claims["jti"])
    assert claims["payload"] == {"user": user, "date": today}, claims
    if exp.get("ttl"):
        assert claims["exp"] == claims["iat"] + exp["ttl"], claims
    else:
        assert "exp" not in claims, claims
    # A wrong key must fail: proves the check above is a real one.
    try:
        jwt.decode(token, b"not-the-key", algorithms=["HS512"])
        sys.exit("token verified with a wrong key")
    except jwt.InvalidSignatureError:
        pass
    out.append(claims)
print(json.dumps({"verified": len(out), "claims": out}))
