//! The README's configuration reference is the one generated from the
//! configuration struct.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn readme_configuration_reference_matches_the_config_struct() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = "<!-- config-reference:start -->\n";
    let end = "<!-- config-reference:end -->";
    let from = readme.find(start).expect("start marker") + start.len();
    let to = readme.find(end).expect("end marker");
    let generated = roadhub::Config::reference_markdown();
    assert_eq!(
        &readme[from..to],
        generated,
        "README.md's configuration reference is stale; replace it with:\n{generated}"
    );
}
