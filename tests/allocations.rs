//! The engine's hot path does not allocate after warm-up.
//!
//! A counting global allocator wraps the system allocator; after a warm-up
//! that fills every window, feeding samples that trip nothing must allocate
//! nothing. Only the test's own thread is counted: the test harness's other
//! threads allocate when they please (seen on a loaded machine: 4
//! allocations counted in 3 of 11 runs, none in 12 with `--test-threads=1`).
#![allow(unsafe_code)] // the counting allocator below is the only unsafe code in the project

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use guardian::config::Config;
use guardian::metrics::Sample;
use guardian::policy::{Engine, Mode, compile_str};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations are counted (no destructor, no allocation).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn on_sample_does_not_allocate_after_warm_up() {
    let mut text = String::new();
    let whens = [
        "kind = \"threshold\"\nmetric = \"a\"\nop = \">\"\nvalue = 1e12",
        "kind = \"change\"\nmetric = \"a\"\nwindow = \"10 blocks\"\ndirection = \"down\"\nby = \"90%\"",
        "kind = \"change\"\nmetric = \"b\"\nwindow = \"2m\"\ndirection = \"up\"\nby = 1e12",
        "kind = \"sum\"\nmetric = \"b\"\nwindow = \"20 blocks\"\nop = \">\"\nvalue = \"900%\"\nrelative_to = \"a\"",
        "kind = \"rate\"\nmetric = \"a\"\nwindow = \"5 blocks\"\nper = \"second\"\ndirection = \"either\"\nabove = 1e12",
        "kind = \"deviation\"\nmetric = \"a\"\nreference = \"b\"\nabove = \"100000%\"",
        "kind = \"ewma\"\nmetric = \"a\"\nhalflife = 20\nwarmup = 50\nz = 1e6\ndirection = \"either\"",
        "kind = \"cusum\"\nmetric = \"b\"\nwarmup = 50\nslack = 0.5\nthreshold = 1e9\ndirection = \"up\"",
        "kind = \"stale\"\nmetric = \"c\"\nafter = \"1000 blocks\"",
        "kind = \"all\"\nfor = \"3 blocks\"\nof = [{ kind = \"threshold\", metric = \"a\", op = \"<\", value = 0 }, { kind = \"threshold\", metric = \"b\", op = \"<\", value = 0 }]",
    ];
    for (i, when) in whens.iter().enumerate() {
        text += &format!(
            "[[policy]]\nid = \"p{i}\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"x\"\ncooldown = \"1 block\"\n[policy.when]\n{when}\n\n"
        );
    }
    let set = compile_str("alloc.toml", &text, &Config::empty()).unwrap();
    let mut engine = Engine::new(set, Mode::Enforce);
    let (a, b, c) = (
        engine.metric_id("a").unwrap(),
        engine.metric_id("b").unwrap(),
        engine.metric_id("c").unwrap(),
    );
    let mut trips = 0;
    let mut feed = |engine: &mut Engine, block: u64| {
        let time_ms = block * 12_000;
        let wobble = (block % 7) as f64;
        for (metric, value) in [(a, 1000.0 + wobble), (b, 100.0 + wobble)] {
            engine.on_sample(
                Sample {
                    block,
                    time_ms,
                    metric,
                    value,
                },
                &mut |_| trips += 1,
            );
        }
        if block.is_multiple_of(10) {
            engine.on_sample(
                Sample {
                    block,
                    time_ms,
                    metric: c,
                    value: 1.0,
                },
                &mut |_| trips += 1,
            );
        }
    };
    for block in 0..500 {
        feed(&mut engine, block);
    }
    COUNTED.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for block in 500..5_500 {
        feed(&mut engine, block);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(false));
    assert_eq!(trips, 0, "the workload is meant to trip nothing");
    assert_eq!(
        after - before,
        0,
        "on_sample allocated {} times after warm-up",
        after - before
    );
}
