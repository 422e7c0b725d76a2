use gatehouse_shared::{
    AccessClaims, Algorithm, Audience, KeySet, SigningKey, TokenClaims, Verifier, VerifierOptions,
    sign_access_token,
};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://api.test";
pub const NOW: i64 = 1_800_000_000;

/// A signing key and a verifier that trusts it.
pub struct Fixture {
    pub key: SigningKey,
    pub verifier: Verifier,
}

impl Fixture {
    pub fn new(alg: Algorithm) -> Self {
        Self::with_options(alg, VerifierOptions::new(ISSUER, AUDIENCE))
    }

    pub fn with_options(alg: Algorithm, options: VerifierOptions) -> Self {
        let key = SigningKey::generate(alg).unwrap();
        let verifier = Verifier::new(KeySet::new([key.verifying_jwk()]), options);
        Self { key, verifier }
    }

    pub fn sign(&self, claims: &TokenClaims) -> String {
        sign_access_token(&self.key, claims).unwrap()
    }

    /// A JWS with this key's kid, any header and payload JSON.
    pub fn sign_raw(&self, header: &serde_json::Value, payload: &[u8]) -> String {
        self.key.sign_raw_jws(&header.to_string(), payload)
    }
}

pub fn claims() -> TokenClaims {
    TokenClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: Audience::single(AUDIENCE),
        exp: NOW + 900,
        iat: NOW,
        nbf: Some(NOW),
        jti: "jti-1".into(),
        sid: "sid-1".into(),
        scope: "read write".into(),
        client_id: Some("fixture-app".into()),
    }
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDsa, Algorithm::Es256];

/// Claims as a verifier would hand them out, for code that consumes verified claims.
pub fn trusted(claims: &TokenClaims) -> AccessClaims {
    AccessClaims::unverified_for_tests(claims.clone(), "test-kid")
}

/// A stand-in for the worker's WebCrypto: ed25519-dalek's plain (non-strict) equation.
pub struct DalekOracle;

impl gatehouse_shared::Ed25519Oracle for DalekOracle {
    type Fault = std::convert::Infallible;

    async fn verify(
        &self,
        input: &gatehouse_shared::Ed25519Input<'_>,
    ) -> Result<bool, Self::Fault> {
        use ed25519_dalek::Verifier as _;
        Ok(
            ed25519_dalek::VerifyingKey::from_bytes(input.key.as_bytes()).is_ok_and(|key| {
                key.verify(
                    input.signed,
                    &ed25519_dalek::Signature::from_bytes(&input.signature),
                )
                .is_ok()
            }),
        )
    }
}

/// `Verifier::verify_with` the stand-in oracle; its future is ready at once.
pub fn oracle_verify(
    verifier: &Verifier,
    token: &str,
    now: i64,
) -> Result<AccessClaims, gatehouse_shared::VerifyError> {
    ready(verifier.verify_with(&DalekOracle, token, now))
}

/// Polls a future of the stand-in oracle, which is ready at once.
pub fn ready<T>(future: impl Future<Output = Result<T, std::convert::Infallible>>) -> T {
    let future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut context) {
        std::task::Poll::Ready(result) => result.unwrap_or_else(|never| match never {}),
        std::task::Poll::Pending => panic!("the stand-in oracle never waits"),
    }
}

/// `RevocationList::verify_snapshot`, checked to agree with `verify_snapshot_with` the stand-in
/// oracle (the worker's path) whenever every key is Ed25519, the one kind the oracle checks.
pub fn verify_snapshot(
    jws: &str,
    keys: &KeySet,
    options: &gatehouse_shared::SnapshotOptions,
    now: i64,
) -> Result<gatehouse_shared::RevocationList, gatehouse_shared::SnapshotError> {
    agreeing(
        jws,
        keys,
        gatehouse_shared::RevocationList::verify_snapshot(jws, keys, options, now),
        gatehouse_shared::RevocationList::verify_snapshot_with(
            &DalekOracle,
            jws,
            keys,
            options,
            now,
        ),
    )
}

/// `RevocationDelta::verify`, checked against `verify_with` as [`verify_snapshot`] is.
pub fn verify_delta(
    jws: &str,
    keys: &KeySet,
    options: &gatehouse_shared::SnapshotOptions,
    now: i64,
) -> Result<gatehouse_shared::RevocationDelta, gatehouse_shared::SnapshotError> {
    agreeing(
        jws,
        keys,
        gatehouse_shared::RevocationDelta::verify(jws, keys, options, now),
        gatehouse_shared::RevocationDelta::verify_with(&DalekOracle, jws, keys, options, now),
    )
}

/// `own`, after checking that the oracle's path (`oracle`, polled only for an all-Ed25519 key
/// set) came to the same result.
fn agreeing<T: PartialEq + std::fmt::Debug>(
    jws: &str,
    keys: &KeySet,
    own: Result<T, gatehouse_shared::SnapshotError>,
    oracle: impl Future<
        Output = Result<Result<T, gatehouse_shared::SnapshotError>, std::convert::Infallible>,
    >,
) -> Result<T, gatehouse_shared::SnapshotError> {
    if only_ed25519(keys) {
        assert_eq!(own, ready(oracle), "the two paths disagree on {jws:.80}");
    }
    own
}

fn only_ed25519(keys: &KeySet) -> bool {
    keys.keys()
        .iter()
        .all(|key| key.algorithm() == Algorithm::EdDsa)
}
