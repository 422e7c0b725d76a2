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
mod tests;
