//! proptest strategies for hostile input: what any bus client may send.

use proptest::prelude::*;

/// Arbitrary JSON values (null, booleans, integers, short strings of any
/// characters, and arrays and objects of those, nested up to 3 levels): for
/// property tests of config files and handler bodies.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// use proptest::test_runner::TestRunner;
///
/// let mut runner = TestRunner::deterministic();
/// let value = telestion_test::json_value().new_tree(&mut runner).unwrap().current();
/// assert!(serde_json::to_string(&value).is_ok());
/// ```
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
