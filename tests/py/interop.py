"""Interop with Python's own JOSE and OAuth 2.0 clients: PyJWT (on pyca/cryptography, OpenSSL's
Ed25519 and P-256), Authlib's OAuth2Session and RFC 9068 validator, and joserfc under it. Run by tests/e2e/jws_interop.rs (ops `sign`,
`verify`, `verify_snapshot`, as tests/js/jose-interop.mjs) and oauth_clients.rs (`oauth`) with
the virtualenv scripts/setup.sh builds from tests/py/requirements.txt; one JSON object in on
stdin, one out on stdout. The Rust side asserts; this script only reports what the libraries
did.
"""

import base64
import json
import sys

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

ACCESS_TOKEN_TYPE = "at+jwt"


def failure(error):
    """A PyJWT failure as its class name and text: the Rust side asserts on the name."""
    return {"ok": False, "code": type(error).__name__, "message": str(error)}


def sign(request):
    """Tokens PyJWT signs with keys it makes, and the public JWKS Gatehouse should verify them by."""
    keys = {
        "EdDSA": (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
        "ES256": (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    }
    jwks, tokens = [], {}
    for alg, (private, algorithm) in keys.items():
        kid = f"py-{alg.lower()}"
        jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        jwks.append(jwk)
        headers = {"kid": kid, "typ": ACCESS_TOKEN_TYPE}
        tokens[alg] = jwt.encode(request["claims"], private, algorithm=alg, headers=headers)
    return {"jwks": {"keys": jwks}, "tokens": tokens}


def verify(request):
    """PyJWT's verdict on a token signed elsewhere, with keys from a JWKS document."""
    try:
        header = jwt.get_unverified_header(request["token"])
        key = jwt.PyJWKSet.from_dict(request["jwks"])[header["kid"]]
        payload = jwt.decode(
            request["token"],
            key,
            algorithms=[header["alg"]] if header["alg"] in ("EdDSA", "ES256") else [],
            audience=request["audience"],
            issuer=request["issuer"],
        )
    except jwt.PyJWTError as error:
        return failure(error)
    return {"ok": True, "header": header, "payload": payload}


def verify_snapshot(request):
    """A signed revocation list is a plain JWS to PyJWT: its payload (binary) in base64url as
    PyJWT decoded it, once the signature and `typ` hold."""
    try:
        header = jwt.get_unverified_header(request["jws"])
        key = jwt.PyJWKSet.from_dict(request["jwks"])[header["kid"]]
        decoded = jwt.api_jws.decode_complete(request["jws"], key, algorithms=["EdDSA"])
    except jwt.PyJWTError as error:
        return failure(error)
    if decoded["header"].get("typ") != request["typ"]:
        return {"ok": False, "code": "wrong typ"}
    payload = base64.urlsafe_b64encode(decoded["payload"]).rstrip(b"=").decode()
    return {"ok": True, "payload_b64": payload}


def oauth(request):
    """A public client's whole life against the running issuer, as Authlib and PyJWT do it:
    discovery (RFC 8414), the password grant, the access token checked by PyJWKClient against
    the published JWKS, a refresh, a revocation (RFC 7009), and a refresh after it. With `alg`
    `Ed25519` (the issuer's `jws_alg`), which PyJWT 2.x does not know, joserfc checks the
    tokens instead, told the algorithm, and PyJWT's refusal is reported."""
    issuer, out, alg = request["issuer"], {}, request.get("alg", "EdDSA")
    metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10)
    metadata.raise_for_status()
    metadata = metadata.json()
    out["metadata_issuer"] = metadata["issuer"]
    # `client_secret_basic` sends the id and a secret (unchecked there) in `Authorization: Basic`.
    client_auth = request.get("client_auth", "none")
    client = OAuth2Session(
        client_id="interop-python",
        client_secret=None if client_auth == "none" else "not-checked",
        token_endpoint_auth_method=client_auth,
        revocation_endpoint_auth_method=client_auth,
        scope=request["scope"],
    )
    out["client_auth"] = client.token_endpoint_auth_method
    first = client.fetch_token(
        metadata["token_endpoint"],
        grant_type="password",
        username=request["username"],
        password=request["password"],
    )
    out["first"] = {k: first.get(k) for k in ("token_type", "expires_in", "scope")}

    jwks = jwt.PyJWKClient(metadata["jwks_uri"], cache_keys=False)
    def pyjwt_claims(access_token):
        key = jwks.get_signing_key_from_jwt(access_token)
        return jwt.decode(
            access_token,
            key,
            algorithms=[alg],
            audience=request["audience"],
            issuer=metadata["issuer"],
            options={"require": ["exp", "iat", "sub", "jti"]},
        )

    # RFC 9068's validator, as a resource server on Authlib runs it.
    class Validator(JWTBearerTokenValidator):
        def get_jwks(self):
            return requests.get(metadata["jwks_uri"], timeout=10).json()

    validator = Validator(issuer=metadata["issuer"], resource_server=request["audience"])
    def rfc9068(access_token):
        try:
            token = validator.authenticate_token(access_token)
            validator.validate_token(token, [request["scope"]], None)
            return {"ok": True, "client_id": token["client_id"]}
        except Exception as error:  # any refusal is reported to the test, by name
            return {"ok": False, "message": repr(error.__cause__ or error)}

    def claims_of(access_token):
        if alg == "EdDSA":
            return pyjwt_claims(access_token)
        keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
        token = joserfc_jwt.decode(access_token, keys, algorithms=[alg])
        joserfc_jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": request["audience"]},
            **{claim: {"essential": True} for claim in ("exp", "iat", "sub", "jti")},
        ).validate(token.claims)
        return token.claims

    if alg != "EdDSA":
        try:
            pyjwt_claims(first["access_token"])
            out["pyjwt"] = {"ok": True}
        except Exception as error:  # PyJWT's refusal is reported to the test, by name
            out["pyjwt"] = {"ok": False, "message": repr(error)}

    out["first_claims"] = claims_of(first["access_token"])
    out["first_header"] = jwt.get_unverified_header(first["access_token"])

    second = client.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"])
    out["second_claims"] = claims_of(second["access_token"])

    out["rfc9068"] = [rfc9068(first["access_token"]), rfc9068(second["access_token"])]
    out["rotated"] = second["refresh_token"] != first["refresh_token"]

    revoked = client.revoke_token(
        metadata["revocation_endpoint"],
        token=second["refresh_token"],
        token_type_hint="refresh_token",
    )
    out["revoke_status"] = revoked.status_code
    try:
        client.refresh_token(metadata["token_endpoint"], refresh_token=second["refresh_token"])
        out["after_revoke"] = {"ok": True}
    except OAuthError as error:
        out["after_revoke"] = {"ok": False, "error": error.error}

    try:
        client.fetch_token(
            metadata["token_endpoint"],
            grant_type="password",
            username=request["username"],
            password=request["password"] + "-wrong",
        )
        out["wrong_password"] = {"ok": True}
    except OAuthError as error:
        out["wrong_password"] = {"ok": False, "error": error.error}
    return out


OPS = {"sign": sign, "verify": verify, "verify_snapshot": verify_snapshot, "oauth": oauth}

if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(OPS[request["op"]](request), sys.stdout)
