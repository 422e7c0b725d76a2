//! Password policy and argon2id hashing on a bounded pool off the async executor.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rocket::fairing::AdHoc;
use tokio::sync::{Semaphore, oneshot};

use crate::config::{Config, PasswordConfig};
use crate::error::ApiError;
use crate::metrics::Metrics;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Whether `password` could be anyone's: longer than the policy allows, it never is, and
/// checking it would only spend argon2 time and a lockout attempt. In NFKC, as the policy
/// counts it, or as typed, as it counted before passwords were normalised (NFKC can lengthen
/// one: U+FDFA is 18 characters).
pub fn may_be_a_password(password: &str) -> bool {
    let within = |text: &str| text.chars().count() <= MAX_PASSWORD_CHARS;
    within(password) || within(&normalize_password(password))
}

/// A password as it is hashed and compared: Unicode NFKC (NIST SP 800-63B §5.1.1.2), so the
/// same password typed where keyboards or input methods give other forms of its characters (a
/// precomposed `é` or `e` plus a combining accent, fullwidth letters from an East Asian input
/// method) is the same password.
pub fn normalize_password(password: &str) -> Cow<'_, str> {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(password)
}

/// Which form of a password a stored hash was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    No,
    /// Its NFKC form: how every hash is made now.
    Normalized,
    /// The form it was typed in, which is not NFKC: a hash made before passwords were
    /// normalised, to be replaced.
    AsTyped,
}

/// The most common passwords (NIST SP 800-63B §5.1.1.2: refuse known-compromised values).
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// argon2id parameters. [`HashPolicy::owasp`] in production, [`HashPolicy::fast_for_tests`]
/// where hashing speed is not the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPolicy {
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl HashPolicy {
    pub const fn owasp() -> Self {
        Self {
            m_cost: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }

    pub const fn fast_for_tests() -> Self {
        Self {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    pub const fn from_config(c: &PasswordConfig) -> Self {
        Self {
            m_cost: c.m_cost,
            t_cost: c.t_cost,
            p_cost: c.p_cost,
        }
    }

    /// What makes these parameters unusable, naming the settings: argon2's own limits, and at
    /// most 1 GiB per hash (a KiB/bytes slip would otherwise end in an out-of-memory kill
    /// without a word).
    pub fn problem(self) -> Option<String> {
        if self.m_cost > MAX_M_COST_KIB {
            return Some(format!(
                "GATEHOUSE_PASSWORD__M_COST is {} KiB; at most {MAX_M_COST_KIB} KiB (1 GiB) is \
                 accepted (OWASP: 19456, that is 19 MiB)",
                self.m_cost
            ));
        }
        self.argon2().err().map(|e| e.to_string())
    }

    fn argon2(self) -> Result<Argon2<'static>, ApiError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None).map_err(|e| {
            ApiError::Internal(format!(
                "argon2 parameters (GATEHOUSE_PASSWORD__M_COST, __T_COST, __P_COST): {e}"
            ))
        })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    pub fn hash(self, password: &str) -> Result<String, ApiError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
        let salt =
            SaltString::encode_b64(&bytes).map_err(|e| ApiError::Internal(format!("salt: {e}")))?;
        self.argon2()?
            .hash_password(normalize_password(password).as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("hashing: {e}")))
    }

    /// Which form of `password` the PHC string `stored` matches (under the parameters it
    /// records). What argon2's `verify_password` does, but in this thread's reused working
    /// memory. A hash made before passwords were normalised (before 2026-12-06) is of the
    /// password as it was typed, so one that is not in NFKC is also tried as typed: that
    /// password keeps working from where it was set, and a login rehashes it.
    pub fn matching(self, password: &str, stored: &str) -> Match {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Match::No;
        };
        let matches = |candidate: &str| {
            verify_in_reused_memory(candidate.as_bytes(), &parsed).unwrap_or(false)
        };
        let normalized = normalize_password(password);
        if matches(&normalized) {
            Match::Normalized
        } else if normalized != password && matches(password) {
            Match::AsTyped
        } else {
            Match::No
        }
    }

    /// Whether `password` matches `stored` in either form ([`Self::matching`]).
    pub fn verify(self, password: &str, stored: &str) -> bool {
        self.matching(password, stored) != Match::No
    }

    /// Whether a stored hash was made with other parameters or another algorithm, and should be
    /// replaced on the next successful login.
    pub fn requires_upgrade(self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return true;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return true;
        };
        parsed.algorithm.as_str() != "argon2id"
            || parsed.version != Some(Version::V0x13.into())
            || params.m_cost() != self.m_cost
            || params.t_cost() != self.t_cost
            || params.p_cost() != self.p_cost
    }
}

thread_local! {
    /// Each hashing thread keeps its argon2 working memory (19 MiB at OWASP cost) rather than
    /// taking fresh pages from the allocator for every login, which fault in one by one.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn verify_in_reused_memory(password: &[u8], stored: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()
        .ok()?
        .unwrap_or_default();
    let params = Params::try_from(stored).ok()?;
    let expected = stored.hash?;
    let mut salt = [0u8; 64];
    let salt = stored.salt?.decode_b64(&mut salt).ok()?;
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    BLOCKS.with_borrow_mut(|blocks| {
        let needed = argon.params().block_count();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, &mut out, blocks.get_mut(..needed)?)
            .ok()
    })?;
    // `Output` compares in constant time.
    Some(Output::new(&out).ok()? == expected)
}

/// Why a password is refused, or `Ok` for an acceptable one.
pub fn check_password_policy(password: &str, username: &str) -> Result<(), ApiError> {
    let password = normalize_password(password);
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::InvalidPassword(
            "the password must have at least 8 characters",
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::InvalidPassword(
            "the password must have at most 1024 characters",
        ));
    }
    let lowered = password.to_lowercase();
    if lowered == username || COMMON_PASSWORDS.lines().any(|p| p == lowered) {
        return Err(ApiError::InvalidPassword(
            "this password is too common or too easy to guess; choose another",
        ));
    }
    Ok(())
}

/// Usernames: trimmed, lower-cased, 3–64 of `a-z 0-9 . _ - @`.
pub fn normalize_username(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim().to_lowercase();
    let len = name.chars().count();
    if !(3..=64).contains(&len) {
        return Err(ApiError::InvalidUsername(
            "usernames have 3 to 64 characters",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(ApiError::InvalidUsername(
            "usernames may contain only letters, digits, '.', '_', '-' and '@'",
        ));
    }
    Ok(name)
}

/// Runs hashing on a dedicated pool sized to the cores; a semaphore bounds the queue so memory
/// stays flat under a flood, and an overflow answers 503 instead of queueing without end.
pub struct Hasher {
    policy: HashPolicy,
    pool: rayon::ThreadPool,
    queue: Arc<Semaphore>,
    /// A hash of a random password, verified for unknown users so they take as long as real ones.
    dummy_hash: String,
    metrics: Arc<Metrics>,
}

/// The most memory one hash may take, in KiB (argon2's `m_cost`).
const MAX_M_COST_KIB: u32 = 1 << 20;

impl Hasher {
    pub fn new(
        policy: HashPolicy,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ApiError> {
        if let Some(problem) = policy.problem() {
            return Err(ApiError::Internal(problem));
        }
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            workers
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("argon2-{i}"))
            .build()
            .map_err(|e| ApiError::Internal(format!("hash pool: {e}")))?;
        let dummy_hash = policy.hash(&crate::ids::random(24)?)?;
        Ok(Self {
            policy,
            pool,
            queue: Arc::new(Semaphore::new(workers * 32)),
            dummy_hash,
            metrics,
        })
    }

    pub const fn policy(&self) -> HashPolicy {
        self.policy
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _slot = self
            .queue
            .try_acquire()
            .map_err(|_| ApiError::unavailable("too many logins in progress"))?;
        let (tx, rx) = oneshot::channel();
        let metrics = Arc::clone(&self.metrics);
        self.pool.spawn(move || {
            let started = Instant::now();
            let out = job();
            metrics.observe_hash(started.elapsed());
            let _ = tx.send(out);
        });
        rx.await
            .map_err(|_| ApiError::Internal("hash worker vanished".into()))
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let policy = self.policy;
        self.run(move || policy.hash(&password)).await?
    }

    /// Checks against `stored`, or against the dummy hash when there is no user (never a
    /// match then).
    pub async fn check(&self, password: String, stored: Option<String>) -> Result<Match, ApiError> {
        let policy = self.policy;
        let (stored, real) = match stored {
            Some(s) => (s, true),
            None => (self.dummy_hash.clone(), false),
        };
        let found = self
            .run(move || policy.matching(&password, &stored))
            .await?;
        Ok(if real { found } else { Match::No })
    }

    /// Whether `password` matches `stored` ([`Self::check`]).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        Ok(self.check(password, stored).await? != Match::No)
    }
}

/// The hasher, at ignite.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Password hashing", |rocket| async {
        let (Some(config), Some(metrics)) =
            (rocket.state::<Config>(), rocket.state::<Arc<Metrics>>())
        else {
            tracing::error!("password stage needs config and metrics");
            return Err(rocket);
        };
        let policy = HashPolicy::from_config(&config.password);
        match Hasher::new(policy, config.password.workers, Arc::clone(metrics)) {
            Ok(hasher) => Ok(rocket.manage(hasher)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the hash pool");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue holds 32 hashes per worker; one more answers 503 at once instead of waiting.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_hash_queue_answers_unavailable() {
        let hasher = Arc::new(
            Hasher::new(
                HashPolicy::fast_for_tests(),
                1,
                Arc::new(Metrics::default()),
            )
            .unwrap(),
        );
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(std::sync::Mutex::new(held));
        let mut queued = Vec::new();
        for _ in 0..32 {
            let (hasher, held) = (Arc::clone(&hasher), Arc::clone(&held));
            queued.push(tokio::spawn(async move {
                // Released by the test, or by the timer if an assertion failed first.
                let wait = move || {
                    let _ = held
                        .lock()
                        .map(|rx| rx.recv_timeout(std::time::Duration::from_secs(10)));
                };
                hasher.run(wait).await
            }));
        }
        for _ in 0..1000 {
            if hasher.queue.available_permits() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let refused = hasher.verify("password".into(), None).await;
        assert!(
            matches!(refused, Err(ApiError::Unavailable { .. })),
            "{refused:?}"
        );
        for _ in 0..32 {
            let _ = release.send(());
        }
        for job in queued {
            assert!(job.await.unwrap().is_ok());
        }
        assert!(!hasher.verify("password".into(), None).await.unwrap());
    }

    #[test]
    fn an_m_cost_beyond_a_gibibyte_is_refused_by_name() {
        let policy = HashPolicy {
            m_cost: MAX_M_COST_KIB + 1,
            ..HashPolicy::fast_for_tests()
        };
        let refused = Hasher::new(policy, 1, Arc::new(Metrics::default()));
        assert!(
            matches!(&refused, Err(ApiError::Internal(why)) if why.contains("GATEHOUSE_PASSWORD__M_COST")),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn policy_round_trip_and_upgrade_detection() {
        let fast = HashPolicy::fast_for_tests();
        let stored = fast.hash("correct horse battery").unwrap();
        assert!(fast.verify("correct horse battery", &stored));
        assert!(!fast.verify("correct horse batterz", &stored));
        assert!(!fast.requires_upgrade(&stored));
        let stronger = HashPolicy { t_cost: 2, ..fast };
        assert!(stronger.requires_upgrade(&stored));
        // Verification follows the parameters recorded in the hash.
        assert!(stronger.verify("correct horse battery", &stored));
        assert!(fast.requires_upgrade("$2b$12$not-an-argon2-hash"));
        assert!(!fast.verify("x", "garbage"));
    }

    /// Verification in reused memory answers exactly as argon2's own `verify_password`, for
    /// other variants, versions and sizes too, and a smaller hash after a larger one.
    #[test]
    fn reused_memory_verification_agrees_with_argon2() {
        use argon2::password_hash::PasswordVerifier as _;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let mut stored = Vec::new();
        for (alg, version, m, t, len) in [
            (Algorithm::Argon2id, Version::V0x13, 256, 2, 32),
            (Algorithm::Argon2i, Version::V0x13, 64, 1, 16),
            (Algorithm::Argon2d, Version::V0x10, 128, 3, 64),
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 32),
        ] {
            let params = Params::new(m, t, 1, Some(len)).unwrap();
            let argon = Argon2::new(alg, version, params);
            stored.push(argon.hash_password(b"right", &salt).unwrap().to_string());
        }
        for phc in &stored {
            let parsed = PasswordHash::new(phc).unwrap();
            for attempt in ["right", "wrong", ""] {
                let theirs = Argon2::default()
                    .verify_password(attempt.as_bytes(), &parsed)
                    .is_ok();
                let ours = HashPolicy::fast_for_tests().verify(attempt, phc);
                assert_eq!(ours, theirs, "{phc} with {attempt:?}");
                assert_eq!(ours, attempt == "right");
            }
        }
    }

    #[test]
    fn password_policy() {
        assert!(check_password_policy("short", "u").is_err());
        assert!(check_password_policy(&"x".repeat(1025), "u").is_err());
        assert!(check_password_policy("Password1", "u").is_err(), "common");
        assert!(check_password_policy("alice-the-user", "alice-the-user").is_err());
        assert!(check_password_policy("plover-quartz-7", "u").is_ok());
        // Length counts characters, not bytes.
        assert!(check_password_policy("ééééééé", "u").is_err());
    }

    #[test]
    fn passwords_are_compared_in_nfkc() {
        let policy = HashPolicy::fast_for_tests();
        let (composed, decomposed) = ("caf\u{e9}-plover-7", "cafe\u{301}-plover-7");
        let stored = policy.hash(composed).unwrap();
        assert!(policy.verify(composed, &stored));
        assert!(policy.verify(decomposed, &stored));
        assert!(!policy.verify("cafe-plover-7", &stored));
        // Fullwidth forms, as East Asian input methods type them, are their ASCII letters.
        let ascii = policy.hash("plover-quartz-7").unwrap();
        assert!(policy.verify("\u{ff50}lover-quartz-\u{ff17}", &ascii));
        assert!(
            check_password_policy("\u{ff50}assword1", "u").is_err(),
            "common"
        );
        // A hash made before normalisation, of a decomposed password as typed, still takes it.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let legacy = policy
            .argon2()
            .unwrap()
            .hash_password(decomposed.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert_eq!(policy.matching(decomposed, &legacy), Match::AsTyped);
        assert_eq!(policy.matching(composed, &legacy), Match::No);
        assert_eq!(policy.matching(decomposed, &stored), Match::Normalized);
        assert!(!policy.verify("cafe-plover-7", &legacy));
        // Over 1024 characters as typed, 609 in NFKC: taken at registration, so at login too.
        let long = format!("{}-plover-7", "e\u{301}".repeat(600));
        assert!(check_password_policy(&long, "u").is_ok());
        assert!(may_be_a_password(&long));
    }

    #[test]
    fn usernames_are_normalised() {
        assert_eq!(normalize_username("  Alice.Smith ").unwrap(), "alice.smith");
        assert!(normalize_username("ab").is_err());
        assert!(normalize_username("a b c").is_err());
        assert!(normalize_username("robert'); drop table users;--").is_err());
    }
}
