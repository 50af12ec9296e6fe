//! Emergency delivery: fees that get the pause in first, nonces that never
//! jam, replacement when a block passes without inclusion, and a deadline.
//!
//! - Fees: with a pending attack transaction known, offer more than its max fee
//!   *and* its priority fee (anvil's `--order fees` ranks by max fee, real
//!   builders by effective tip), within the executor's cap; otherwise a fast
//!   default (twice the base fee plus the default tip).
//! - Nonces: read from the chain (pending) at start and after every error, so a
//!   nonce consumed by another transaction from the same key, or a failed send,
//!   never leaves a permanent gap (OpenZeppelin Relayer issues 818 and 843).
//! - Several actions at once: each delivery takes the next nonce and holds
//!   its key's lane only until a node has taken its first transaction, so
//!   pauses tripped together are all in the pool before the next block, not
//!   one block after another. Deliveries through a Safe's owners hold the
//!   Safe's lane throughout (each SafeTx takes the Safe's nonce).
//! - Replacement: when a block is mined without our transaction, the same nonce
//!   is re-sent with both fee fields raised by at least 12.5% (what nodes
//!   require to replace), up to the cap; at the deadline the executor gives up
//!   and reports it (the caller alerts).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use alloy::primitives::Address;

use crate::config::Delivery;

/// A pending attack transaction's fees, to be outbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Urgency {
    pub attacker_max_fee: u128,
    pub attacker_priority_fee: u128,
}

/// EIP-1559 fee fields, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee: u128,
    pub priority_fee: u128,
}

/// `x` raised by 12.5%, rounded up, and by at least one wei.
fn plus_eighth(x: u128) -> u128 {
    x.saturating_add(x.div_ceil(8)).saturating_add(1)
}

/// First fees for a transaction, given the next block's base fee.
pub fn initial(base_fee: u128, d: &Delivery, urgency: Option<Urgency>) -> Fees {
    let mut priority = d.default_priority_fee_wei;
    let mut max = base_fee.saturating_mul(2).saturating_add(priority);
    if let Some(u) = urgency {
        priority = priority.max(plus_eighth(u.attacker_priority_fee));
        max = max
            .max(plus_eighth(u.attacker_max_fee))
            .max(base_fee.saturating_mul(2).saturating_add(priority));
    }
    let max = max.min(d.max_fee_cap_wei);
    Fees {
        max_fee: max,
        priority_fee: priority.min(max),
    }
}

/// Fees for a replacement: both fields at least 12.5% up, within the cap, and
/// at least what a fresh transaction would offer at the current base fee.
/// `None` when the cap leaves no room for a valid replacement.
pub fn bump(prev: Fees, fresh: Fees, cap: u128) -> Option<Fees> {
    let max = plus_eighth(prev.max_fee).max(fresh.max_fee);
    let priority = plus_eighth(prev.priority_fee).max(fresh.priority_fee);
    if max > cap {
        return None;
    }
    Some(Fees {
        max_fee: max,
        priority_fee: priority.min(max),
    })
}

/// Nonces per sending account: the next one to use, and the ones held by
/// deliveries in flight. The next is forgotten on every error, so the next
/// use reads it again from the chain, passing over the nonces still held.
///
/// Several deliveries from one key may be in flight at once (each pause in
/// the pool without waiting for the one before it to land). Choosing a
/// nonce and getting it taken by a node happen under the key's [`Lanes`]
/// lane, so two deliveries never choose at the same time.
#[derive(Debug, Default)]
pub struct Nonces(Mutex<HashMap<Address, Book>>);

#[derive(Debug, Default)]
struct Book {
    next: Option<u64>,
    held: BTreeSet<u64>,
}

impl Book {
    /// The first nonce at or after `n` that no delivery in flight holds.
    fn first_free(&self, mut n: u64) -> u64 {
        while self.held.contains(&n) {
            n += 1;
        }
        n
    }
}

impl Nonces {
    /// The cached next nonce, if any.
    #[cfg(test)]
    pub fn cached(&self, who: Address) -> Option<u64> {
        self.lock().get(&who).and_then(|b| b.next)
    }
    /// Sets the next nonce from the chain's count of `who`'s transactions
    /// (at start; passing over any nonce a delivery holds).
    pub fn set(&self, who: Address, counted: u64) {
        let mut books = self.lock();
        let b = books.entry(who).or_default();
        b.next = Some(b.first_free(counted));
    }
    /// Takes the next nonce no delivery holds, which this delivery then holds
    /// until [`Nonces::release`]; `None` when it must be read from the chain first.
    pub fn take(&self, who: Address) -> Option<u64> {
        let mut books = self.lock();
        let b = books.get_mut(&who)?;
        let n = b.first_free(b.next?);
        b.next = Some(n + 1);
        b.held.insert(n);
        Some(n)
    }
    /// [`Nonces::take`] from the chain's count of `who`'s transactions, whatever was cached.
    pub fn take_from(&self, who: Address, counted: u64) -> u64 {
        let mut books = self.lock();
        let b = books.entry(who).or_default();
        let n = b.first_free(counted);
        b.next = Some(n + 1);
        b.held.insert(n);
        n
    }
    /// The delivery holding `n` is over (or moves to another nonce).
    pub fn release(&self, who: Address, n: u64) {
        if let Some(b) = self.lock().get_mut(&who) {
            b.held.remove(&n);
        }
    }
    /// A transaction at `n` landed: the next is after it (unless forgotten).
    pub fn landed(&self, who: Address, n: u64) {
        if let Some(b) = self.lock().get_mut(&who) {
            b.next = b.next.map(|next| next.max(n + 1));
        }
    }
    /// Drops the cached nonce: the next send resynchronises from the chain.
    pub fn forget(&self, who: Address) {
        if let Some(b) = self.lock().get_mut(&who) {
            b.next = None;
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Book>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One lane per account (a sending key, or a Safe whose nonce a SafeTx
/// takes): what must not run twice at once for it waits here.
#[derive(Debug, Default)]
pub struct Lanes(Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>);

impl Lanes {
    /// Waits for `who`'s lane; it is free again when the guard is dropped.
    pub async fn enter(&self, who: Address) -> tokio::sync::OwnedMutexGuard<()> {
        let lane = {
            let mut lanes = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            lanes.entry(who).or_default().clone()
        };
        lane.lock_owned().await
    }
}

/// What a node's refusal to take a transaction means for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// The node already has this very transaction: it counts as accepted.
    AlreadyKnown,
    /// The nonce is used (by us or by another transaction from this key): look
    /// for ours by hash, else resync.
    NonceTooLow,
    /// The fees are too low (to replace, or for the base fee): bump.
    Underpriced,
    /// The nonce is ahead of the account's (a gap): resync from the chain.
    NonceTooHigh,
    /// The key cannot pay for the transaction: retry (it may be funded) and alert.
    InsufficientFunds,
    /// Anything else (an overloaded or broken node): retry elsewhere, with backoff.
    Unknown,
}

/// Node error strings, lowercased, by what they mean. The first table that
/// matches wins, so the more specific strings come first ("replacement
/// transaction underpriced" before "nonce"). Sources: geth `core/txpool/errors.go`
/// and `core/error.go` (also op-geth, Arbitrum Nitro, Polygon bor, BSC), reth
/// `crates/transaction-pool/src/error.rs`, Erigon txpool reasons, Nethermind
/// `AcceptTxResult`, Besu `TransactionInvalidReason`, anvil's pool errors.
const TABLE: &[(SendRefusal, &[&str])] = &[
    (
        SendRefusal::AlreadyKnown,
        &[
            "already known",                // geth, reth, Erigon, op-geth
            "known transaction",            // older geth, Besu ("Known transaction")
            "transaction already imported", // anvil
            "alreadyknown",                 // Nethermind, Erigon reason names
            "transaction_already_known",    // Besu
            "already in mempool",           // some L2 sequencers
            "already exists",               // zkSync ("tx already exists")
        ],
    ),
    (
        SendRefusal::Underpriced,
        &[
            "replacement transaction underpriced", // geth, reth, anvil, Erigon
            "replacement_underpriced",             // Besu
            "replaceunderpriced",                  // Erigon reason
            "transaction underpriced",             // geth, reth
            "underpriced",
            "max fee per gas less than block base fee", // geth, reth, anvil
            "feecaptoolow",                             // Erigon
            "feetoolow",                                // Nethermind, Erigon
            "gas price too low",                        // Besu, older geth
            "gas_price_too_low",                        // Besu
            "below configured minimum gas price",       // Besu
            "fee too low",
            "max fee per gas too low",
            "transaction fee too low",
        ],
    ),
    (
        SendRefusal::NonceTooLow,
        &[
            "nonce too low",               // geth, reth, anvil, Erigon, Arbitrum
            "nonce_too_low",               // Besu
            "noncetoolow",                 // Erigon reason
            "oldnonce",                    // Nethermind
            "nonce has already been used", // ethers-style relays
            "invalid nonce",               // some L2s (nonce below the account's)
        ],
    ),
    (
        SendRefusal::NonceTooHigh,
        &[
            "nonce too high",                              // geth, reth, anvil, Arbitrum
            "noncegap",                                    // Nethermind
            "nonce_too_far_in_future",                     // Besu
            "noncetoofarinfuture",                         // Nethermind
            "future transaction tries to replace pending", // geth
            "nonce gap",
        ],
    ),
    (
        SendRefusal::InsufficientFunds,
        &[
            "insufficient funds", // geth, reth, anvil, Erigon ("insufficient funds for gas * price + value")
            "insufficientfunds",  // Nethermind, Erigon reason
            "upfront cost exceeds account balance", // Besu
            "transaction_upfront_cost_exceeds_balance", // Besu
            "insufficient balance", // some L2s
            "sender doesn't have enough funds", // older Nethermind
        ],
    ),
];

/// Classifies a node's refusal by the table of real clients' strings.
pub fn classify(message: &str) -> SendRefusal {
    let m = message.to_ascii_lowercase();
    TABLE
        .iter()
        .find(|(_, needles)| needles.iter().any(|n| m.contains(n)))
        .map_or(SendRefusal::Unknown, |(class, _)| *class)
}

/// How long to wait before retrying a broadcast nobody took: 100 ms, doubling, at most 2 s.
pub fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)).min(2_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn d() -> Delivery {
        Delivery {
            max_fee_cap_wei: 100 * GWEI,
            default_priority_fee_wei: 2 * GWEI,
            deadline_ms: 10_000,
            ..Delivery::default()
        }
    }

    #[test]
    fn fees_outbid_both_fields_of_a_pending_attack_within_the_cap() {
        let f = initial(10 * GWEI, &d(), None);
        assert_eq!(
            f,
            Fees {
                max_fee: 22 * GWEI,
                priority_fee: 2 * GWEI
            }
        );
        let u = Urgency {
            attacker_max_fee: 40 * GWEI,
            attacker_priority_fee: 8 * GWEI,
        };
        let f = initial(10 * GWEI, &d(), Some(u));
        assert!(f.max_fee > u.attacker_max_fee && f.priority_fee > u.attacker_priority_fee);
        let u = Urgency {
            attacker_max_fee: 400 * GWEI,
            attacker_priority_fee: 300 * GWEI,
        };
        let f = initial(10 * GWEI, &d(), Some(u));
        assert_eq!(
            f,
            Fees {
                max_fee: 100 * GWEI,
                priority_fee: 100 * GWEI
            }
        );
    }

    #[test]
    fn replacements_raise_both_fields_by_at_least_an_eighth_up_to_the_cap() {
        let prev = Fees {
            max_fee: 40 * GWEI,
            priority_fee: 3 * GWEI,
        };
        let next = bump(prev, initial(GWEI, &d(), None), 100 * GWEI).unwrap();
        assert!(next.max_fee * 8 >= prev.max_fee * 9);
        assert!(next.priority_fee * 8 >= prev.priority_fee * 9);
        assert_eq!(
            bump(
                Fees {
                    max_fee: 95 * GWEI,
                    priority_fee: GWEI
                },
                prev,
                100 * GWEI
            ),
            None
        );
        // A base fee that jumped makes the replacement follow it.
        let wide = Delivery {
            max_fee_cap_wei: 1000 * GWEI,
            ..d()
        };
        let fresh = initial(60 * GWEI, &wide, None);
        let next = bump(prev, fresh, 1000 * GWEI).unwrap();
        assert_eq!(next.max_fee, 122 * GWEI);
    }

    #[test]
    fn deliveries_in_flight_take_consecutive_nonces_and_a_resync_passes_over_them() {
        let (me, n) = (Address::repeat_byte(7), Nonces::default());
        assert_eq!(n.take(me), None, "nothing known: read it from the chain");
        n.set(me, 5);
        assert_eq!(
            (n.take(me), n.take(me), n.take(me)),
            (Some(5), Some(6), Some(7))
        );
        // The first gives up: the chain says 5 again, but 6 and 7 are held.
        n.release(me, 5);
        n.forget(me);
        assert_eq!(n.take(me), None, "forgotten: read it from the chain");
        assert_eq!(n.take_from(me, 5), 5, "5 is free again: the next fills it");
        assert_eq!(n.take(me), Some(8), "6 and 7 are held");
        n.release(me, 8);
        assert_eq!(
            n.take_from(me, 6),
            8,
            "a resync passes over 6 and 7, still held"
        );
        // Landing never moves the next nonce back, nor sets one forgotten.
        n.landed(me, 6);
        assert_eq!(n.cached(me), Some(9));
        n.forget(me);
        n.landed(me, 7);
        assert_eq!(n.cached(me), None);
        n.set(me, 6);
        assert_eq!(
            n.cached(me),
            Some(9),
            "at start too, 6, 7 and 8 are passed over"
        );
    }

    #[tokio::test]
    async fn a_lane_lets_one_holder_at_a_time() {
        let (lanes, me) = (Lanes::default(), Address::repeat_byte(7));
        let first = lanes.enter(me).await;
        let _other = lanes.enter(Address::repeat_byte(8)).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), lanes.enter(me));
        assert!(
            waiting.await.is_err(),
            "the second waits while the first holds it"
        );
        drop(first);
        let again = tokio::time::timeout(std::time::Duration::from_millis(50), lanes.enter(me));
        assert!(again.await.is_ok(), "free once the first is dropped");
    }

    #[test]
    fn refusals_are_classified() {
        assert_eq!(
            classify("nonce too low: next nonce 5, tx nonce 4"),
            SendRefusal::NonceTooLow
        );
        assert_eq!(
            classify("replacement transaction underpriced"),
            SendRefusal::Underpriced
        );
        assert_eq!(
            classify("max fee per gas less than block base fee"),
            SendRefusal::Underpriced
        );
        assert_eq!(
            classify("insufficient funds for gas * price + value"),
            SendRefusal::InsufficientFunds
        );
        // One line per client and meaning, as the nodes write them.
        let table = [
            ("already known", SendRefusal::AlreadyKnown),
            ("known transaction: 0xabc", SendRefusal::AlreadyKnown),
            ("transaction already imported", SendRefusal::AlreadyKnown),
            ("AlreadyKnown", SendRefusal::AlreadyKnown),
            ("TRANSACTION_ALREADY_KNOWN", SendRefusal::AlreadyKnown),
            ("OldNonce", SendRefusal::NonceTooLow),
            ("NONCE_TOO_LOW", SendRefusal::NonceTooLow),
            ("nonce too high", SendRefusal::NonceTooHigh),
            ("NonceGap", SendRefusal::NonceTooHigh),
            (
                "NONCE_TOO_FAR_IN_FUTURE_FOR_SENDER",
                SendRefusal::NonceTooHigh,
            ),
            ("FeeTooLow", SendRefusal::Underpriced),
            ("REPLACEMENT_UNDERPRICED", SendRefusal::Underpriced),
            (
                "Gas price below configured minimum gas price",
                SendRefusal::Underpriced,
            ),
            ("InsufficientFunds", SendRefusal::InsufficientFunds),
            (
                "Upfront cost exceeds account balance",
                SendRefusal::InsufficientFunds,
            ),
            ("upstream connect error", SendRefusal::Unknown),
            ("intrinsic gas too low", SendRefusal::Unknown),
            ("txpool is full", SendRefusal::Unknown),
        ];
        for (m, class) in table {
            assert_eq!(classify(m), class, "{m}");
        }
    }
}
