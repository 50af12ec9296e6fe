//! `make demo` keeps telling the truth: the headline demo, run as the README's
//! first command runs it, pauses the bridge ahead of the attack and saves the funds.

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pauses_ahead_of_the_attack_and_saves_the_funds() {
    let anvil = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    let story = guardian::demo::run(&anvil)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for told in [
        "without guardian: the attack was mined in block",
        "took 1000 bUSD",
        "reverted (the bridge was paused)",
        "pause ordered ahead of the attack in the same block: yes",
        "funds lost: 1000 bUSD without guardian, 0 bUSD with it (100.0% saved)",
    ] {
        assert!(
            story.contains(told),
            "the story does not say {told:?}:\n{story}"
        );
    }
}
