//! The fault-injection proxy itself, against a real anvil: each fault is what
//! a client sees, and everything else is anvil's own answer.

mod common;

use std::time::{Duration, Instant};

use alloy::node_bindings::AnvilInstance;
use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use common::fault_proxy::{Fault, FaultProxy};
use serde_json::{Value, json};

async fn rpc(url: &str, body: Value) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(2))
        .json(&body)
        .send()
        .await
}

fn call(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
}

async fn result(url: &str, method: &str, params: Value) -> Value {
    rpc(url, call(method, params))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

/// A fresh anvil and a fault proxy in front of it.
async fn proxied_anvil() -> (AnvilInstance, FaultProxy) {
    let anvil = common::anvil(&[]);
    let proxy = FaultProxy::start(&anvil.endpoint()).await;
    (anvil, proxy)
}

#[tokio::test]
async fn healthy_requests_and_batches_are_anvils_answers() {
    let (anvil, proxy) = proxied_anvil().await;
    let direct = result(&anvil.endpoint(), "eth_chainId", json!([])).await;
    let proxied = result(&proxy.http_url(), "eth_chainId", json!([])).await;
    assert_eq!(direct["result"], proxied["result"]);

    let batch = json!([
        call("eth_chainId", json!([])),
        call("eth_blockNumber", json!([]))
    ]);
    let answers: Value = rpc(&proxy.http_url(), batch)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answers.as_array().unwrap().len(), 2);
    assert_eq!(answers[0]["result"], direct["result"]);
    assert_eq!(proxy.counts("eth_chainId").seen, 2);
    assert_eq!(proxy.counts("eth_chainId").faulted, 0);
}

#[tokio::test]
async fn each_answer_fault_is_what_the_client_receives() {
    let (_anvil, proxy) = proxied_anvil().await;
    let url = proxy.http_url();

    proxy.fail("eth_call", Fault::upstream_error());
    let v = result(&url, "eth_call", json!([{}, "latest"])).await;
    assert_eq!(v["error"]["message"], "upstream connect error");
    proxy.heal();

    for (fault, expected) in [
        (Fault::Null, Value::Null),
        (Fault::EmptyData, json!("0x")),
        (Fault::zero_word(), json!(format!("0x{}", "0".repeat(64)))),
    ] {
        proxy.fail("eth_chainId", fault);
        assert_eq!(
            result(&url, "eth_chainId", json!([])).await["result"],
            expected
        );
        proxy.heal();
    }

    proxy.fail("eth_chainId", Fault::Http(500));
    assert_eq!(
        rpc(&url, call("eth_chainId", json!([])))
            .await
            .unwrap()
            .status(),
        500
    );
    proxy.heal();

    // In a batch, only the matching element is faulted.
    proxy.fail("eth_blockNumber", Fault::Null);
    let batch = json!([
        call("eth_chainId", json!([])),
        call("eth_blockNumber", json!([]))
    ]);
    let answers: Value = rpc(&url, batch).await.unwrap().json().await.unwrap();
    assert_eq!(answers[0]["result"], json!("0x7a69"));
    assert_eq!(answers[1]["result"], Value::Null);
    assert_eq!(proxy.counts("eth_blockNumber").faulted, 1);
}

#[tokio::test]
async fn connection_faults_refuse_hang_and_limited_rules_heal() {
    let (_anvil, proxy) = proxied_anvil().await;
    let url = proxy.http_url();

    proxy.fail_all(Fault::Refuse);
    assert!(rpc(&url, call("eth_chainId", json!([]))).await.is_err());
    proxy.heal();

    proxy.fail("eth_chainId", Fault::Hang);
    let started = Instant::now();
    let err = rpc(&url, call("eth_chainId", json!([]))).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    proxy.heal();

    proxy.fail_times("eth_chainId", Fault::Null, 2);
    for expected in [Value::Null, Value::Null, json!("0x7a69")] {
        assert_eq!(
            result(&url, "eth_chainId", json!([])).await["result"],
            expected
        );
    }
}

#[tokio::test]
async fn accept_then_error_reaches_the_node() {
    let (anvil, proxy) = proxied_anvil().await;
    let from = format!("{:#x}", anvil.addresses()[0]);
    let to = format!("{:#x}", anvil.addresses()[1]);
    let tx = json!([{"from": from, "to": to, "value": "0x1"}]);

    proxy.fail(
        "eth_sendTransaction",
        Fault::accept_then(Fault::upstream_error()),
    );
    let v = result(&proxy.http_url(), "eth_sendTransaction", tx).await;
    assert_eq!(v["error"]["message"], "upstream connect error");
    // The node took it all the same: anvil automines it.
    let nonce = result(
        &anvil.endpoint(),
        "eth_getTransactionCount",
        json!([from, "latest"]),
    )
    .await;
    assert_eq!(nonce["result"], "0x1");
}

#[tokio::test]
async fn a_lagging_node_answers_from_an_older_head() {
    let anvil = common::anvil(&[]);
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    provider
        .raw_request::<_, Value>("anvil_mine".into(), (10u64,))
        .await
        .unwrap();
    let proxy = FaultProxy::start(&anvil.endpoint()).await;
    let url = proxy.http_url();
    proxy.fail_all(Fault::Lag(4));

    assert_eq!(
        result(&url, "eth_blockNumber", json!([])).await["result"],
        "0x6"
    );
    let latest = result(&url, "eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(latest["result"]["number"], "0x6");
    let newest = result(
        &anvil.endpoint(),
        "eth_getBlockByNumber",
        json!(["0xa", false]),
    )
    .await;
    let hash = newest["result"]["hash"].clone();
    let by_hash = result(
        &url,
        "eth_getBalance",
        json!([format!("{:#x}", anvil.addresses()[0]), {"blockHash": hash}]),
    )
    .await;
    assert_eq!(by_hash["error"]["message"], "header not found");
    assert_eq!(
        result(&url, "eth_getBlockByHash", json!([hash, false])).await["result"],
        Value::Null
    );
}

#[tokio::test]
async fn websockets_forward_stall_and_drop() {
    let (_anvil, proxy) = proxied_anvil().await;
    let ws = ProviderBuilder::new()
        .connect_ws(WsConnect::new(proxy.ws_url()))
        .await
        .unwrap();
    assert_eq!(ws.get_chain_id().await.unwrap(), 31337);
    assert_eq!(proxy.ws_connections(), 1);

    proxy.stall_ws(true);
    let stalled = tokio::time::timeout(Duration::from_secs(1), ws.get_block_number()).await;
    assert!(stalled.is_err(), "a stalled socket answers nothing");
    proxy.heal();

    let fresh = ProviderBuilder::new()
        .connect_ws(WsConnect::new(proxy.ws_url()))
        .await
        .unwrap();
    assert_eq!(fresh.get_chain_id().await.unwrap(), 31337);

    // Dropped sockets close; alloy's client reconnects on its own.
    let before = proxy.ws_connections();
    proxy.drop_ws();
    let _ = tokio::time::timeout(Duration::from_secs(5), fresh.get_block_number()).await;
    assert!(
        proxy.ws_connections() > before,
        "the drop forced a new connection"
    );

    proxy.refuse_ws(true);
    assert!(
        ProviderBuilder::new()
            .connect_ws(WsConnect::new(proxy.ws_url()))
            .await
            .is_err()
    );
}
