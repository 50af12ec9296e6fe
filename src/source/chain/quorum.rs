//! The quorum check: before an action is taken on a block's values, the same
//! metrics are read again at the same block hash from every read endpoint,
//! and enough of them must agree.
//!
//! One endpoint answering a wrong but well-formed value (a broken or lagging
//! node answering `0`) is then a minority view: it cannot trip an action on
//! its own. Endpoints the others outvote are marked unhealthy in the shared
//! [`Health`], so the follower stops reading from them.

use std::sync::Arc;
use std::time::Duration;

use alloy::rpc::client::RpcClient;

use super::endpoints::{Fault, Health};
use super::reads::{Head, ReadPlan, Snapshot};
use super::{ChainError, Watcher};

/// Default relative tolerance between endpoints' values (0.01%).
pub const DEFAULT_TOLERANCE: f64 = 0.0001;

/// What the endpoints said about a trip's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `agree` endpoints gave the values the trip was decided on.
    Confirmed { agree: usize, asked: usize },
    /// At least the quorum of endpoints agree on other values: the trip's
    /// values were a minority view (`minority`: the endpoints that gave them).
    Outvoted {
        majority: Vec<(Arc<str>, f64)>,
        minority: Vec<usize>,
        asked: usize,
    },
    /// Not enough endpoints agree either way (some did not answer, or all differ).
    Unconfirmed {
        agree: usize,
        answered: usize,
        asked: usize,
    },
}

/// Reads a network's metrics at one block hash from every endpoint and counts agreement.
#[derive(Debug)]
pub struct Quorum {
    need: usize,
    tolerance: f64,
    plan: ReadPlan,
    clients: Vec<RpcClient>,
    health: Arc<Health>,
    timeout: Duration,
}

impl Quorum {
    /// A quorum of `need` endpoints over `watcher`'s read endpoints and metrics.
    pub async fn connect(
        watcher: &Watcher,
        need: usize,
        tolerance: f64,
    ) -> Result<Self, ChainError> {
        Ok(Self {
            need,
            tolerance,
            plan: watcher.plan().clone(),
            clients: watcher.read_clients().await?,
            health: watcher.health(),
            timeout: watcher.options().request_timeout,
        })
    }

    pub fn need(&self) -> usize {
        self.need
    }

    pub fn endpoints(&self) -> usize {
        self.clients.len()
    }

    /// Whether `metric` is read from an endpoint's answer (so endpoints can
    /// disagree on it), not from the header the block was followed by.
    pub fn compares(&self, metric: &str) -> bool {
        self.plan.from_endpoint(metric)
    }

    /// Re-reads `values` (metric, value the trip saw) at `block`'s hash from
    /// every endpoint and counts the endpoints that agree with them.
    pub async fn check(&self, block: &Snapshot, values: &[(Arc<str>, f64)]) -> Verdict {
        let head = Head {
            number: block.number,
            hash: block.hash,
            parent_hash: block.parent_hash,
            timestamp: block.time_ms / 1000,
            gas_used: 0,
            gas_limit: 0,
            base_fee: None,
        };
        let answers = self.read_all(&head).await;
        let asked = answers.len();
        let pick = |s: &Snapshot| -> Vec<Option<f64>> {
            values
                .iter()
                .map(|(m, _)| s.values.iter().find(|(n, _)| n == m).map(|(_, v)| *v))
                .collect()
        };
        let seen: Vec<Option<Vec<Option<f64>>>> =
            answers.iter().map(|a| a.as_ref().map(pick)).collect();
        let primary: Vec<Option<f64>> = values.iter().map(|(_, v)| Some(*v)).collect();
        let agreeing: Vec<usize> = (0..asked)
            .filter(|&i| seen[i].as_ref().is_some_and(|s| self.same(s, &primary)))
            .collect();
        if agreeing.len() >= self.need {
            for &i in &agreeing {
                self.health.ok(i);
            }
            return Verdict::Confirmed {
                agree: agreeing.len(),
                asked,
            };
        }
        // Does a quorum agree on something else?
        for candidate in seen.iter().flatten() {
            if candidate.iter().any(Option::is_none) || self.same(candidate, &primary) {
                continue;
            }
            let with: usize = seen
                .iter()
                .flatten()
                .filter(|s| self.same(s, candidate))
                .count();
            if with >= self.need {
                for &i in &agreeing {
                    self.health.mark(i, Fault::Outvoted);
                }
                let majority = values
                    .iter()
                    .zip(candidate)
                    .map(|((m, _), v)| (m.clone(), v.unwrap_or(f64::NAN)))
                    .collect();
                return Verdict::Outvoted {
                    majority,
                    minority: agreeing,
                    asked,
                };
            }
        }
        Verdict::Unconfirmed {
            agree: agreeing.len(),
            answered: seen.iter().flatten().count(),
            asked,
        }
    }

    /// Every endpoint's snapshot at `head`'s hash, `None` where it gave none in time.
    async fn read_all(&self, head: &Head) -> Vec<Option<Snapshot>> {
        let reads = self.clients.iter().map(|c| async move {
            match tokio::time::timeout(self.timeout, self.plan.read(c, head)).await {
                Ok(Ok(s)) if s.hash == head.hash => Some(s),
                _ => None,
            }
        });
        futures_util::future::join_all(reads).await
    }

    /// Whether two value lists agree within the tolerance (a missing value agrees with nothing).
    fn same(&self, a: &[Option<f64>], b: &[Option<f64>]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => agree(*x, *y, self.tolerance),
                _ => false,
            })
    }
}

/// Whether `a` and `b` differ by at most `tolerance` of the larger magnitude.
pub fn agree(a: f64, b: f64, tolerance: f64) -> bool {
    a == b || (a - b).abs() <= tolerance * a.abs().max(b.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_agree_within_a_relative_tolerance() {
        assert!(agree(100.0, 100.0, 0.0));
        assert!(agree(100.0, 100.005, 0.0001));
        assert!(!agree(100.0, 100.02, 0.0001));
        assert!(!agree(0.0, 1000.0, 0.0001));
        assert!(agree(0.0, 0.0, 0.0));
    }
}
