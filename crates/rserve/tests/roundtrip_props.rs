//! Property tests of QAP1 encode/decode against values R itself produces, on a real Rserve.
//!
//! For each random value `v` (atomic vectors with NA/NaN/±Inf/-0/subnormals, UTF-8 strings,
//! names, nested lists):
//! 1. R builds `lit` from a deparsed R literal of `v`; `eval("lit")` must decode to `v`
//!    bit-exactly (R produced it, we decoded it);
//! 2. `assign("x", v)` through `CMD_setSEXP`, then R must find `identical(x, lit, num.eq =
//!    FALSE)` (bitwise doubles) and `eval("x")` must decode to `v` bit-exactly.

mod common;

use std::cell::RefCell;

use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rserve::Connection;
use rserve::testing::RserveFixture;

#[test]
fn values_round_trip_through_r_bit_exactly() {
    let fx = RserveFixture::start().expect("start Rserve");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = RefCell::new(
        rt.block_on(Connection::connect(fx.addr(), &fx.options()))
            .expect("connect"),
    );
    // R's NaN constant has platform-specific bits; take them from R.
    let r_nan = rt
        .block_on(conn.borrow_mut().eval("NaN"))
        .unwrap()
        .as_f64s()
        .unwrap()[0]
        .to_bits();
    let cases: u32 = std::env::var("RSERVE_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&common::sexp(r_nan), |v| {
            let literal = common::deparse(&v);
            let mut c = conn.borrow_mut();
            rt.block_on(async {
                let fail = |what: &str, e: rserve::Error| {
                    TestCaseError::fail(format!("{what}: {e} (literal: {literal})"))
                };
                let from_r = c
                    .eval(&format!("lit <- {literal}; lit"))
                    .await
                    .map_err(|e| fail("R building the literal", e))?;
                proptest::prop_assert!(
                    common::same_bits(&from_r, &v),
                    "R-built value decoded differently\n literal: {literal}\n R: {from_r:?}\n want: {v:?}"
                );
                c.assign("x", &v).await.map_err(|e| fail("assign", e))?;
                let same = c
                    .eval("identical(x, lit, num.eq = FALSE)")
                    .await
                    .map_err(|e| fail("identical", e))?;
                proptest::prop_assert_eq!(same.as_bool(), Some(true), "assigned value differs in R; literal: {}", literal);
                let back = c.eval("x").await.map_err(|e| fail("eval x", e))?;
                proptest::prop_assert!(common::same_bits(&back, &v), "assigned value came back as {:?}", back);
                Ok(())
            })
        })
        .unwrap();
}
