"""Access tokens against libraries this project did not write (run by tests/tokens_interop.rs).

    python oauth_interop.py BASE_URL KEY_ID KEY SIGNING_KEY_PEM_FILE

- authlib's OAuth 2 client obtains a token with client credentials (client_secret_basic and
  client_secret_post);
- PyJWT's PyJWKClient verifies it against /.well-known/jwks.json, checking typ, iss, aud, exp;
- a token PyJWT signs with the key in the JWKS is accepted by the example's BearerTokenLayer
  (/internal/whoami), and tokens it signs with alg none or HS256 over the public key are
  refused.

Prints one line per check; exits non-zero on the first failure.
"""

import base64
import json
import sys
import time
import urllib.error
import urllib.request

import jwt
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives import serialization

base, key_id, key, signing_pem = sys.argv[1:5]
issuer = base
audience = "tower-apikey"


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
    if not ok:
        sys.exit(1)


def internal(token):
    request = urllib.request.Request(base + "/internal/whoami", headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


metadata = json.load(urllib.request.urlopen(base + "/.well-known/oauth-authorization-server", timeout=10))
check("metadata issuer is the base URL", metadata["issuer"] == issuer, metadata)
check("metadata names client_credentials", "client_credentials" in metadata["grant_types_supported"])

tokens = []
for method in ("client_secret_basic", "client_secret_post"):
    client = OAuth2Session(key_id, key, token_endpoint_auth_method=method, scope="read")
    token = client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    check(f"authlib obtains a token ({method})", token.get("token_type") == "Bearer" and "access_token" in token, token)
    check(f"expires_in is given ({method})", isinstance(token.get("expires_in"), int) and token["expires_in"] > 0, token)
    tokens.append(token["access_token"])

jwks_client = jwt.PyJWKClient(metadata["jwks_uri"])
for access_token in tokens:
    header = jwt.get_unverified_header(access_token)
    check("typ is at+jwt", header.get("typ") == "at+jwt", header)
    signing_key = jwks_client.get_signing_key_from_jwt(access_token)
    claims = jwt.decode(
        access_token,
        signing_key.key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"], "verify_exp": True},
    )
    check("PyJWKClient verifies it (iss, aud, exp)", claims["client_id"] == key_id and claims["scope"] == "read", claims)
    check("expires_in equals exp - iat", claims["exp"] - claims["iat"] > 0)
    status, body, _ = internal(access_token)
    check("the internal service accepts it", status == 200, body)

# A wrong audience or issuer is refused by PyJWT itself: the claims are what they say.
try:
    jwt.decode(tokens[0], jwks_client.get_signing_key_from_jwt(tokens[0]).key, algorithms=["EdDSA", "ES256"], audience="other", issuer=issuer)
    check("PyJWT refuses another audience", False)
except jwt.InvalidAudienceError:
    check("PyJWT refuses another audience", True)

# Tokens PyJWT signs.
with open(signing_pem, "rb") as file:
    private = serialization.load_pem_private_key(file.read(), password=None)
kid = jwt.get_unverified_header(tokens[0])["kid"]
now = int(time.time())
claims = {
    "iss": issuer, "sub": "made-by-pyjwt", "aud": audience, "iat": now, "exp": now + 120,
    "jti": "pyjwt-1", "client_id": key_id, "scope": "read",
}
alg = jwt.get_unverified_header(tokens[0])["alg"]
signed = jwt.encode(claims, private, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})
status, body, _ = internal(signed)
check("a token PyJWT signs with the JWKS key is accepted", status == 200 and body["principal"] == "made-by-pyjwt", body)

none = jwt.encode(claims, None, algorithm="none", headers={"kid": kid, "typ": "at+jwt"})
status, body, headers = internal(none)
check("alg none is refused", status == 401 and 'error="invalid_token"' in headers.get("www-authenticate", ""), (status, body))

jwk = next(k for k in json.load(urllib.request.urlopen(metadata["jwks_uri"], timeout=10))["keys"] if k["kid"] == kid)
secrets = [json.dumps(jwk).encode(), private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)]
if "x" in jwk:
    secrets.append(base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4)))
for secret in secrets:
    try:
        forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid, "typ": "at+jwt"})
    except jwt.InvalidKeyError:
        # PyJWT itself refuses a PEM public key as an HMAC secret; sign that one by hand.
        import hmac, hashlib
        segments = [base64.urlsafe_b64encode(json.dumps(part, separators=(",", ":")).encode()).rstrip(b"=")
                    for part in ({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims)]
        signing_input = b".".join(segments)
        signature = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest()).rstrip(b"=")
        forged = (signing_input + b"." + signature).decode()
    status, body, _ = internal(forged)
    check("HS256 over the public key is refused", status == 401, (status, body))
print("all interop checks passed")
