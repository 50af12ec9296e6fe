//! Reading the module's set-up back from the chain (`guardian setup verify`,
//! and `setup plan` when it plans against the chain).
//!
//! What is read:
//! - the code at the module address, compared byte for byte with the runtime
//!   code this guardian's GuardianModule has for the configured Safe (obtained
//!   by `eth_call`ing its creation code), so a different contract, another
//!   version, or a module of another Safe is told apart;
//! - `isModuleEnabled(module)` on the Safe;
//! - `guardians()`, and `pausePermission`, `parameterPermission`,
//!   `targetLimits` for every target and function the configuration names;
//! - the module's `PausePermissionSet` and `ParameterPermissionSet` events
//!   since `[setup] from_block`, to find permissions the configuration does
//!   not name (the module cannot list them).
//!
//! Every read is pinned to one block.

use std::collections::BTreeSet;

use alloy::eips::BlockId;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, FixedBytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::SolEvent;

use super::{
    Actual, Desired, ISafeModules, Limits, ModuleCode, ParameterState, PauseState, SetupError,
};
use crate::config::Config;
use crate::executor::GuardianModule;

fn rpc<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SetupError + '_ {
    move |e| SetupError::Rpc {
        what: what.to_string(),
        reason: crate::source::chain::redact(&e.to_string()),
    }
}

/// A provider for the set-up's network: its http endpoints in order, the
/// first that answers with the configured chain id.
pub async fn connect(config: &Config, want: &Desired) -> Result<DynProvider, SetupError> {
    let network = config
        .networks
        .get(&want.network)
        .ok_or_else(|| SetupError::NoEndpoint(want.network.clone()))?;
    let mut last = SetupError::NoEndpoint(want.network.clone());
    for (i, url) in network.rpc.iter().enumerate() {
        let Ok(url) = url.parse() else { continue };
        let provider = ProviderBuilder::new().connect_http(url).erased();
        match provider.get_chain_id().await {
            Ok(actual) if actual == network.chain_id => return Ok(provider),
            Ok(actual) => {
                last = SetupError::WrongChain {
                    network: want.network.clone(),
                    expected: network.chain_id,
                    actual,
                }
            }
            Err(e) => {
                last = SetupError::Rpc {
                    what: format!(
                        "eth_chainId on rpc endpoint #{} of network `{}`",
                        i + 1,
                        want.network
                    ),
                    reason: crate::source::chain::redact(&e.to_string()),
                }
            }
        }
    }
    Err(last)
}

/// A failed `eth_call` as text: the decoded revert when there is one, never a URL.
fn call_error(e: &alloy::transports::RpcError<alloy::transports::TransportErrorKind>) -> String {
    match e.as_error_resp() {
        Some(p) => match p.as_revert_data() {
            Some(data) if !data.is_empty() => crate::executor::decode_revert(&data),
            _ => p.message.to_string(),
        },
        None => crate::source::chain::redact(&e.to_string()),
    }
}

/// Reads what the chain holds for `want`, at the latest block.
pub async fn read_actual(provider: &DynProvider, want: &Desired) -> Result<Actual, SetupError> {
    let block = provider
        .get_block_number()
        .await
        .map_err(rpc("eth_blockNumber"))?;
    let at = BlockId::number(block);
    let mut actual = Actual::nothing();
    actual.safe_exists = !provider
        .get_code_at(want.safe)
        .block_id(at)
        .await
        .map_err(rpc("eth_getCode"))?
        .is_empty();
    if !actual.safe_exists {
        return Ok(actual);
    }

    let code = provider
        .get_code_at(want.module)
        .block_id(at)
        .await
        .map_err(rpc("eth_getCode"))?;
    let module = GuardianModule::new(want.module, provider);
    actual.code = if code.is_empty() {
        ModuleCode::Missing
    } else {
        let expected = provider
            .call(TransactionRequest::default().with_deploy_code(want.init_code()))
            .block(at)
            .await
            .map_err(rpc("eth_call (the module's creation code)"))?;
        if expected == code {
            ModuleCode::Matches
        } else {
            let safe = module.safe().block(at).call().await.ok();
            ModuleCode::Differs { safe }
        }
    };
    // Can the Safe itself pause each target right now? The module's pause is
    // the Safe's call: a missing role or a wrong signature shows up here, not
    // during an attack. A target that is already paused cannot be tried.
    for (i, grant) in want.pauses.iter().enumerate() {
        let read = TransactionRequest::default()
            .to(grant.target)
            .input(Bytes::from(grant.getter.to_vec()).into());
        let paused = match provider.call(read).block(at).await {
            Ok(ret) if ret.len() == 32 && ret[..31].iter().all(|b| *b == 0) && ret[31] <= 1 => {
                ret[31] == 1
            }
            Ok(ret) => {
                actual.pause_blocked.push((
                    i,
                    format!(
                        "{} returned {} byte(s), not a bool",
                        grant.getter_sig,
                        ret.len()
                    ),
                ));
                continue;
            }
            Err(e) => {
                actual.pause_blocked.push((
                    i,
                    format!("{} failed: {}", grant.getter_sig, call_error(&e)),
                ));
                continue;
            }
        };
        if paused {
            continue;
        }
        let call = TransactionRequest::default()
            .from(want.safe)
            .to(grant.target)
            .input(Bytes::from(grant.selector.to_vec()).into());
        if let Err(e) = provider.call(call).block(at).await {
            actual.pause_blocked.push((
                i,
                format!(
                    "{} called by the Safe reverts: {}",
                    grant.function,
                    call_error(&e)
                ),
            ));
        }
    }

    let safe = ISafeModules::new(want.safe, provider);
    actual.enabled = safe
        .isModuleEnabled(want.module)
        .block(at)
        .call()
        .await
        .map_err(rpc("isModuleEnabled on the Safe"))?;
    if actual.code != ModuleCode::Matches {
        return Ok(actual);
    }

    actual.guardians = module
        .guardians()
        .block(at)
        .call()
        .await
        .map_err(rpc("guardians()"))?;

    // Every (target, selector) the configuration names or the events mention.
    let mut pause_keys: BTreeSet<(Address, FixedBytes<4>)> =
        want.pauses.iter().map(|p| (p.target, p.selector)).collect();
    let mut param_keys: BTreeSet<(Address, FixedBytes<4>)> = want
        .parameters
        .iter()
        .map(|p| (p.target, p.setter))
        .collect();
    let filter = Filter::new()
        .address(want.module)
        .from_block(want.from_block)
        .to_block(block)
        .event_signature(vec![
            GuardianModule::PausePermissionSet::SIGNATURE_HASH,
            GuardianModule::ParameterPermissionSet::SIGNATURE_HASH,
        ]);
    let logs = provider.get_logs(&filter).await.map_err(|e| SetupError::Rpc {
        what: format!(
            "eth_getLogs of the module from block {} (if the node limits the range, set [setup] from_block to the module's deployment block)",
            want.from_block
        ),
        reason: crate::source::chain::redact(&e.to_string()),
    })?;
    for log in &logs {
        if let Ok(e) = log.log_decode::<GuardianModule::PausePermissionSet>() {
            pause_keys.insert((e.inner.target, e.inner.pauseSelector));
        } else if let Ok(e) = log.log_decode::<GuardianModule::ParameterPermissionSet>() {
            param_keys.insert((e.inner.target, e.inner.setterSelector));
        }
    }
    for (target, selector) in pause_keys {
        let r = module
            .pausePermission(target, selector)
            .block(at)
            .call()
            .await
            .map_err(rpc("pausePermission"))?;
        actual.pauses.insert(
            (target, selector),
            PauseState {
                allowed: r.allowed,
                getter: r.pausedGetter,
            },
        );
    }
    for (target, setter) in param_keys {
        let r = module
            .parameterPermission(target, setter)
            .block(at)
            .call()
            .await
            .map_err(rpc("parameterPermission"))?;
        actual.parameters.insert(
            (target, setter),
            ParameterState {
                allowed: r.allowed,
                getter: r.getterSelector,
                min: r.min,
                max: r.max,
                max_change_bps: r.maxChangeBps,
                min_delay_s: r.minDelay,
            },
        );
    }
    actual.aave_roles = super::aave::read(provider, &want.aave_roles, at).await?;
    for target in want.limits.keys() {
        let r = module
            .targetLimits(*target)
            .block(at)
            .call()
            .await
            .map_err(rpc("targetLimits"))?;
        let n = |u: alloy::primitives::U256| u64::try_from(u).unwrap_or(u64::MAX);
        actual.limits.insert(
            *target,
            Limits {
                cooldown_s: n(r.cooldown),
                max_actions: n(r.maxActionsPerPeriod),
                period_s: n(r.period),
            },
        );
    }
    Ok(actual)
}

/// Verifies the chain against the configuration: every difference, in order.
pub async fn verify(config: &Config) -> Result<(Desired, Vec<super::Difference>), SetupError> {
    let want = Desired::from_config(config)?;
    let provider = connect(config, &want).await?;
    let actual = read_actual(&provider, &want).await?;
    let differences = super::diff(&want, &actual);
    Ok((want, differences))
}

/// The text `setup verify` prints.
pub fn report(want: &Desired, differences: &[super::Difference]) -> String {
    let mut s = format!(
        "GuardianModule {} of Safe {} on network `{}`: ",
        want.module, want.safe, want.network
    );
    if differences.is_empty() {
        s.push_str(&format!(
            "matches the configuration ({} guardian(s), {} pause and {} parameter permission(s), limits on {} target(s))\n",
            want.guardians.len(),
            want.pauses.len(),
            want.parameters.len(),
            want.limits.len()
        ));
    } else {
        s.push_str(&format!("{} difference(s)\n", differences.len()));
        for d in differences {
            s.push_str(&format!("  - {d}\n"));
        }
        s.push_str(
            "run `guardian setup plan --config <guardian.toml>` for the Safe transactions that fix them\n",
        );
    }
    s
}
