//! The README's configuration reference is the one generated from the
//! configuration struct. `ROADHUB_UPDATE_README=1 cargo test --test docs`
//! rewrites it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn readme_configuration_reference_matches_the_config_struct() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = "<!-- config-reference:start -->\n";
    let end = "<!-- config-reference:end -->";
    let from = readme.find(start).expect("start marker") + start.len();
    let to = readme.find(end).expect("end marker");
    let generated = roadhub::Config::reference_markdown();
    if std::env::var_os("ROADHUB_UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..from], generated, &readme[to..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[from..to],
        generated,
        "README.md's configuration reference is stale: run ROADHUB_UPDATE_README=1 cargo test --test docs"
    );
}
