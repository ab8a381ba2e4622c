//! Argon2id password hashing, off the async runtime and bounded in concurrency.
//!
//! Hashing costs ~19 MiB and tens of milliseconds of CPU by design, so it runs in
//! `spawn_blocking` behind a semaphore: a login flood queues instead of exhausting memory and
//! starving every other request. Only register and login hash; sessions never do.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified when the username is unknown so that a login
    /// for a missing account costs as much as one with a wrong password.
    decoy: Arc<String>,
}

impl Passwords {
    pub async fn new() -> anyhow::Result<Passwords> {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let permits = Arc::new(Semaphore::new(cpus));
        let mut random = [0u8; 24];
        rand::fill(&mut random);
        let decoy = Arc::new(hash_blocking(random.to_vec()).await?);
        Ok(Passwords { permits, decoy })
    }

    /// An Argon2id PHC string (`$argon2id$v=19$…`) with a random salt.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await.context("password semaphore closed")?;
        hash_blocking(password.as_bytes().to_vec()).await
    }

    /// Whether `password` matches `phc`; with `None`, checks against the decoy and answers
    /// false, taking the same time.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await.context("password semaphore closed")?;
        let known = phc.is_some();
        let phc = phc.map(str::to_owned).unwrap_or_else(|| self.decoy.as_str().to_owned());
        let password = password.as_bytes().to_vec();
        let matches = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let parsed = PasswordHash::new(&phc).map_err(|e| anyhow!("stored hash: {e}"))?;
            Ok(Argon2::default().verify_password(&password, &parsed).is_ok())
        })
        .await
        .context("password task")??;
        Ok(known && matches)
    }
}

async fn hash_blocking(password: Vec<u8>) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(&password)
            .map(|h| h.to_string())
            .map_err(|e| anyhow!("hash password: {e}"))
    })
    .await
    .context("password task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let passwords = Passwords::new().await.expect("init");
        let hash = passwords.hash("correct horse").await.expect("hash");

        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.verify("correct horse", Some(&hash)).await.expect("verify"));
        assert!(!passwords.verify("wrong horse", Some(&hash)).await.expect("verify"));
        assert!(!passwords.verify("correct horse", None).await.expect("verify"));
    }
}
