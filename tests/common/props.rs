//! What the property tests (tests/api/prop_*.rs, tests/http/prop_http.rs) share: a fixed seed and case count, no
//! regression files, and a deadline on each property so that a loop fails instead of hanging.
//!
//! Every run tries the same cases, so CI cannot flake. To explore others, set the proptest
//! variables, which win over these settings: `PROPTEST_RNG_SEED=7 PROPTEST_CASES=100000
//! cargo test --test api prop_decode::`. A failure prints the shrunk input; nothing is written.

use std::fmt::Debug;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};

/// The seed of every run unless `PROPTEST_RNG_SEED` says otherwise.
const SEED: u64 = 0xba1e_7e57;

/// A property that takes longer than this has looped or hung: a minute, and 50 ms a case
/// (a case takes well under 10 ms, a few seconds per property is normal).
pub fn deadline(cases: u32) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(50) * cases
}

fn set(variable: &str) -> bool {
    std::env::var_os(variable).is_some()
}

/// `cases` cases from the fixed seed, no failure persistence, shrinking bounded in time.
pub fn config(cases: u32) -> Config {
    // Config::default() reads the PROPTEST_* variables.
    let from_env = Config::default();
    Config {
        cases: if set("PROPTEST_CASES") {
            from_env.cases
        } else {
            cases
        },
        rng_seed: if set("PROPTEST_RNG_SEED") {
            from_env.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        max_shrink_time: if set("PROPTEST_MAX_SHRINK_TIME") {
            from_env.max_shrink_time
        } else {
            30_000
        },
        failure_persistence: None,
        ..from_env
    }
}

/// A runner with `config(cases)`, for tests that draw values themselves. (prop_decode.rs and
/// prop_labels.rs; not tests/http.)
#[allow(dead_code)]
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(config(cases))
}

/// Checks `test` on `cases` values of the strategy that `strategy` makes, on a thread of its
/// own. Panics with the shrunk failing input, or when the whole property has not finished
/// within `deadline`: a case that loops cannot hang the suite, and the panic shows its input.
/// Prints the count and time.
pub fn check<S, M, F>(name: &str, cases: u32, strategy: M, test: F)
where
    S: Strategy,
    S::Value: Debug,
    M: FnOnce() -> S + Send + 'static,
    F: Fn(S::Value) -> TestCaseResult + Send + 'static,
{
    let (done, result) = mpsc::channel();
    let started = Instant::now();
    let config = config(cases);
    let cases = config.cases;
    let deadline = deadline(cases);
    // The input of the case under way, for the panic if it never ends.
    let current = Arc::new(Mutex::new(String::new()));
    let under_way = current.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let strategy = strategy();
            let test = move |value: S::Value| {
                *under_way.lock().unwrap_or_else(PoisonError::into_inner) = format!("{value:#?}");
                test(value)
            };
            let outcome = TestRunner::new(config)
                .run(&strategy, test)
                .map_err(|e| e.to_string());
            let _ = done.send(outcome);
        })
        .expect("spawn the property's thread");
    match result.recv_timeout(deadline) {
        Ok(Ok(())) => eprintln!(
            "{name}: {cases} cases passed in {:.2} s",
            started.elapsed().as_secs_f64()
        ),
        Ok(Err(failure)) => panic!("{name}: {failure}"),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let input = current.lock().unwrap_or_else(PoisonError::into_inner);
            panic!("{name}: not finished after {deadline:?}: a case loops or hangs; its input: {input}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the runner died"),
    }
}
