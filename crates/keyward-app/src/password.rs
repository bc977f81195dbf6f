//! Password hashing with Argon2id, off the async runtime, with concurrency capped at the core count
//! and the 19 MiB block buffers reused between hashes.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tokio::sync::Semaphore;

use crate::error::AppError;

/// Argon2id cost parameters; never below OWASP's m=19 MiB, t=2, p=1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP's second recommendation, Keyward's default and floor.
    pub const OWASP: HashParams = HashParams { m_cost_kib: 19 * 1024, t_cost: 2, p_cost: 1 };
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    /// Hashes at once at most: the permits, and the buffers kept.
    concurrency: usize,
    /// The blocks of a buffer for `params`: the only buffers kept.
    blocks: usize,
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Buffers allocated so far (at most `concurrency` of the configured size).
    buffers_made: Arc<AtomicUsize>,
    dummy_hash: Arc<str>,
    /// Passwords verified so far (for `/metrics`, and for tests that prove a bound on them).
    verifications: Arc<AtomicU64>,
    /// Hashes waiting for a permit, and how many may wait before new ones are turned away.
    waiting: Arc<AtomicUsize>,
    queue_limit: usize,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish_non_exhaustive()
    }
}

/// One request counted among those waiting for a permit, until dropped.
struct Waiting<'a> {
    counter: &'a AtomicUsize,
    /// How many were waiting before this one.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize) -> Waiting<'a> {
        Waiting { ahead: counter.fetch_add(1, Ordering::SeqCst), counter }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

impl PasswordHasher {
    /// A hasher running at most `concurrency` hashes at once.
    pub fn new(params: HashParams, concurrency: usize) -> Result<PasswordHasher, AppError> {
        if params.m_cost_kib < HashParams::OWASP.m_cost_kib
            || params.t_cost < HashParams::OWASP.t_cost
            || params.p_cost < 1
        {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "Argon2id parameters below m=19 MiB, t=2, p=1 are refused"
            )));
        }
        let concurrency = concurrency.max(1);
        let blocks = argon_params(params)?.block_count();
        let mut hasher = PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            blocks,
            buffers: Arc::new(Mutex::new(Vec::new())),
            buffers_made: Arc::new(AtomicUsize::new(0)),
            dummy_hash: Arc::from(""),
            verifications: Arc::new(AtomicU64::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue_limit: usize::MAX,
        };
        let salt = [0x5a_u8; SALT_LEN];
        hasher.dummy_hash = Arc::from(hasher.hash_with_salt(b"keyward dummy password", &salt)?);
        Ok(hasher)
    }

    /// At most `limit` hashes wait for a permit; more are refused with [`AppError::Overloaded`]
    /// instead of queueing without end.
    pub fn with_queue_limit(mut self, limit: usize) -> PasswordHasher {
        self.queue_limit = limit;
        self
    }

    /// How many passwords this hasher has verified since it started.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let mut salt = [0_u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt)
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("random generator failed")))?;
        let password = password.to_owned();
        let this = self.clone();
        self.blocking(move || this.hash_with_salt(password.as_bytes(), &salt)).await
    }

    /// Verifies a password against a stored PHC string; `None` verifies against a dummy hash so
    /// that an unknown user costs the same time as a known one, and always fails.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, AppError> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let is_real = stored.is_some();
        let stored = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let this = self.clone();
        let matches = self.blocking(move || this.verify_blocking(password.as_bytes(), &stored)).await?;
        Ok(matches && is_real)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        // Counted as waiting until a permit is held, by a guard: a request dropped while it waits
        // (the client went away) must not leave the count behind.
        let waiting = Waiting::enter(&self.waiting);
        if waiting.ahead >= self.queue_limit {
            return Err(AppError::Overloaded { retry_after: 1 });
        }
        let permit = self.permits.clone().acquire_owned().await;
        drop(waiting);
        let permit = permit.map_err(|_| AppError::Unexpected(anyhow::anyhow!("hasher closed")))?;
        // The permit goes with the work: a dropped request cannot free it while Argon2 still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|err| AppError::Unexpected(anyhow::anyhow!("hashing task failed: {err}")))?
    }

    fn hash_with_salt(&self, password: &[u8], salt: &[u8]) -> Result<String, AppError> {
        let out = self.compute(self.params, password, salt)?;
        let HashParams { m_cost_kib, t_cost, p_cost } = self.params;
        Ok(format!(
            "$argon2id$v=19$m={m_cost_kib},t={t_cost},p={p_cost}${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(out)
        ))
    }

    fn verify_blocking(&self, password: &[u8], stored: &str) -> Result<bool, AppError> {
        let Some((params, salt, expected)) = parse_phc(stored) else { return Ok(false) };
        let out = self.compute(params, password, &salt)?;
        Ok(keyward_core::secret::constant_time_eq(&out, &expected))
    }

    fn compute(&self, params: HashParams, password: &[u8], salt: &[u8]) -> Result<Vec<u8>, AppError> {
        let argon_params = argon_params(params)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params.clone());
        let n_blocks = argon_params.block_count();
        // A kept buffer serves a hash of its size; one of other parameters (a hash stored before
        // they changed) has its own, and leaves the kept ones be.
        let kept = {
            let mut pool = self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if n_blocks == self.blocks { pool.pop() } else { None }
        };
        let mut buffer = kept.unwrap_or_else(|| {
            self.buffers_made.fetch_add(1, Ordering::Relaxed);
            vec![Block::new(); n_blocks]
        });
        let mut out = vec![0_u8; OUTPUT_LEN];
        let res = argon.hash_password_into_with_memory(password, salt, &mut out, &mut buffer[..]);
        if n_blocks == self.blocks {
            let mut pool = self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // As many as can be in use at once. (Kept only while permits were free, a buffer
            // was dropped whenever two hashes ended before the next took the first one back,
            // and a new one allocated and zeroed: 19 MiB written and faulted in.)
            if pool.len() < self.concurrency {
                pool.push(buffer);
            }
        }
        res.map_err(|err| AppError::Unexpected(anyhow::anyhow!("argon2: {err}")))?;
        Ok(out)
    }
}

/// Argon2's parameters for `params`, with this hasher's output length.
fn argon_params(params: HashParams) -> Result<Params, AppError> {
    Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(OUTPUT_LEN))
        .map_err(|err| AppError::Unexpected(anyhow::anyhow!("argon2 parameters: {err}")))
}

fn parse_phc(stored: &str) -> Option<(HashParams, Vec<u8>, Vec<u8>)> {
    let mut parts = stored.split('$');
    let ("", "argon2id", "v=19", costs, salt, hash, None) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next())
    else {
        return None;
    };
    let mut params = HashParams { m_cost_kib: 0, t_cost: 0, p_cost: 0 };
    for cost in costs.split(',') {
        let (key, value) = cost.split_once('=')?;
        let value: u32 = value.parse().ok()?;
        match key {
            "m" => params.m_cost_kib = value,
            "t" => params.t_cost = value,
            "p" => params.p_cost = value,
            _ => return None,
        }
    }
    Some((params, STANDARD_NO_PAD.decode(salt).ok()?, STANDARD_NO_PAD.decode(hash).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_dropped_while_waiting_leaves_no_count_behind() {
        let hasher = PasswordHasher::new(HashParams::OWASP, 1).expect("hasher").with_queue_limit(2);
        let stored = hasher.hash("correct horse battery").await.expect("hash");
        for _ in 0..10 {
            // One hashes, one waits and is dropped (a client that went away), again and again.
            let (a, b) = (hasher.clone(), hasher.clone());
            let (sa, sb) = (stored.clone(), stored.clone());
            let first = tokio::spawn(async move { a.verify("correct horse battery", Some(&sa)).await });
            tokio::task::yield_now().await;
            let second = tokio::spawn(async move { b.verify("correct horse battery", Some(&sb)).await });
            tokio::task::yield_now().await;
            second.abort();
            let _ = second.await;
            assert!(first.await.expect("task").expect("verify"));
        }
        assert_eq!(hasher.waiting.load(Ordering::SeqCst), 0, "no waiting count leaked");
        assert!(hasher.verify("correct horse battery", Some(&stored)).await.expect("still hashing"));
    }

    #[tokio::test]
    async fn a_full_queue_turns_new_hashes_away() {
        let hasher = PasswordHasher::new(HashParams::OWASP, 1).expect("hasher").with_queue_limit(1);
        let stored = hasher.hash("correct horse battery").await.expect("hash");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            tasks.spawn(async move { hasher.verify("correct horse battery", Some(&stored)).await });
        }
        let (mut done, mut refused) = (0, 0);
        while let Some(result) = tasks.join_next().await {
            match result.expect("task") {
                Ok(true) => done += 1,
                Err(AppError::Overloaded { retry_after }) => {
                    assert!(retry_after >= 1);
                    refused += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(done >= 1 && refused >= 1, "done {done}, refused {refused}");
    }

    #[tokio::test]
    async fn hashes_verify_and_reject_wrong_passwords() {
        let hasher = PasswordHasher::new(HashParams::OWASP, 2).expect("hasher");
        let stored = hasher.hash("correct horse battery").await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(hasher.verify("correct horse battery", Some(&stored)).await.expect("verify"));
        assert!(!hasher.verify("correct horse batterz", Some(&stored)).await.expect("verify"));
        assert!(!hasher.verify("anything", None).await.expect("verify"));
        assert!(!hasher.verify("anything", Some("not a phc string")).await.expect("verify"));
        let weak = HashParams { m_cost_kib: 1024, t_cost: 1, p_cost: 1 };
        assert!(PasswordHasher::new(weak, 1).is_err());
    }

    /// Hashes at once reuse the buffers: however they end and start, no more buffers are ever
    /// made than hashes can run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffers_are_reused_under_load() {
        let hasher = PasswordHasher::new(HashParams::OWASP, 2).expect("hasher");
        let stored = hasher.hash("correct horse battery").await.expect("hash");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            tasks.spawn(async move {
                for _ in 0..3 {
                    assert!(hasher.verify("correct horse battery", Some(&stored)).await.expect("verify"));
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task");
        }
        let made = hasher.buffers_made.load(Ordering::Relaxed);
        assert!(made <= 2, "{made}");
        let kept = hasher.buffers.lock().expect("pool").len();
        assert!(kept <= 2);
        // A hash stored with other parameters: one of the same size (only `t` differs) uses a
        // kept buffer and gives it back; a larger one has its own and leaves the kept ones be.
        for params in
            [HashParams { t_cost: 3, ..HashParams::OWASP }, HashParams { m_cost_kib: 2 * 19_456, ..HashParams::OWASP }]
        {
            let other = PasswordHasher::new(params, 1).expect("hasher").hash("older").await.expect("hash");
            assert!(hasher.verify("older", Some(&other)).await.expect("verify"));
        }
        assert_eq!(hasher.buffers_made.load(Ordering::Relaxed), made + 1);
        assert_eq!(hasher.buffers.lock().expect("pool").len(), kept);
    }

    #[test]
    fn phc_strings_round_trip_with_their_parameters() {
        let hasher = PasswordHasher::new(HashParams::OWASP, 1).expect("hasher");
        let own = hasher.hash_with_salt(b"password", b"somesaltsomesalt").expect("hash");
        assert!(hasher.verify_blocking(b"password", &own).expect("verify"));
        assert_eq!(parse_phc(&own).map(|it| it.0), Some(HashParams::OWASP));
    }
}
