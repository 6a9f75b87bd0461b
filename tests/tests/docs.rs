//! The documentation's profiles example is a valid document once its placeholders are filled as
//! the text says (issue 20, item 2); the rest of the docs is checked by scripts/check_docs.py.

#![allow(clippy::expect_used, clippy::panic)]

use jitr_domain::Config;
use jitr_domain::profiles::parse_document;

const PROFILES_PAGE: &str = include_str!("../../docs/profiles.md");

/// The page's first JSON block.
fn example() -> &'static str {
    let start = PROFILES_PAGE.find("```json\n").expect("a JSON example") + "```json\n".len();
    let length = PROFILES_PAGE[start..].find("```").expect("the block ends");
    &PROFILES_PAGE[start..start + length]
}

#[test]
fn the_profiles_example_passes_the_check_once_its_ca_ids_are_filled_in() {
    let default = Config::with_policy("jitr-device").default_profile();
    assert!(
        parse_document(example().as_bytes(), &default).is_err(),
        "the placeholders must not pass for CA ids"
    );
    let filled = example()
        .replace("<64-hex id of the factory CA>", &"a".repeat(64))
        .replace("<64-hex id of a retiring CA>", &"b".repeat(64));
    let profiles = parse_document(filled.as_bytes(), &default)
        .unwrap_or_else(|e| panic!("the documented example: {e}\n{filled}"));
    assert_eq!(profiles.by_ca.len(), 2);
}
