//! Compile-time guarantees, tested as compile-time guarantees: every forbidden
//! use in `tests/ui/fail` must fail to compile with the message in its
//! `.stderr` file (which names the rule), and its near-identical allowed twin
//! in `tests/ui/pass` must compile and run.

#[test]
fn forbidden_uses_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
