//! What the pipeline did, as it happens: a trip, a reorg that replaced a
//! trip's block, the guard's decision, how an approved action ended.
//!
//! [`crate::pipeline::run`] sends each [`Report`] to the probe
//! ([`crate::observe`]: metrics and alerts) and to its caller (the operator's
//! log, scenarios, tests). The types live below both the pipeline and observe,
//! so neither imports the other for them; `crate::pipeline::Report` names the
//! same type.

use crate::decision::Trip;
use crate::executor::Execution;

/// The pending transaction a trip was decided on (its estimated effect tripped the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTx {
    pub hash: alloy::primitives::B256,
    pub from: alloy::primitives::Address,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: Option<u128>,
}

/// What the pipeline did, for the operator's log and for tests.
#[derive(Debug, Clone)]
pub enum Report {
    /// A policy tripped; `pending` names the pending transaction it tripped on, if any.
    Trip {
        trip: Trip,
        pending: Option<PendingTx>,
    },
    /// A reorg replaced the block a trip was decided on: that decision was
    /// based on a chain that no longer is.
    ReorgedOut {
        policy: String,
        action: String,
        block: u64,
    },
    /// The guard's decision on a trip: approved, alert-only, already done or rejected.
    Decision {
        decision_id: u64,
        policy: String,
        action: String,
        block: u64,
        outcome: String,
        approved: bool,
    },
    /// The executor finished an approved action.
    Executed {
        decision_id: u64,
        execution: Execution,
    },
    /// The executor could not finish an approved action.
    ExecutionFailed { decision_id: u64, error: String },
}

/// ops: an execution as a person reads it: what happened, the transaction,
/// fees in gwei.
pub fn describe_execution(execution: &Execution) -> String {
    match execution {
        Execution::Landed {
            tx,
            block,
            replacements,
            fees,
        } => format!(
            "landed in block {block}, transaction {tx} (max fee {}, tip {}, {replacements} replacement{})",
            crate::units::DisplayGwei(fees.max_fee),
            crate::units::DisplayGwei(fees.priority_fee),
            if *replacements == 1 { "" } else { "s" }
        ),
        Execution::DryRun { tx, .. } => {
            format!("dry-run: transaction {tx} signed, not broadcast")
        }
        Execution::Proposed {
            safe_tx_hash,
            outbox_file,
            posted,
        } => format!(
            "proposed: SafeTx {safe_tx_hash} written to {}{}",
            outbox_file.display(),
            if *posted {
                " and posted to the Safe service"
            } else {
                ""
            }
        ),
        Execution::StoodDown { detail } => format!("stood down: {detail}"),
    }
}
