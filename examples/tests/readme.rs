//! The README's Rust snippets stay true: each is an example that the workspace builds
//! (so a snippet that no longer compiles fails CI), and this test checks the README
//! shows it verbatim.

use std::path::Path;

/// The body of the first ```` ```rust ```` block after `heading` in the README.
fn readme_block(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = &readme[readme.find(heading).expect("the heading")..];
    let start = section.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let len = section[start..].find("```").expect("its end");
    section[start..start + len].to_owned()
}

/// An example's source without its `//!` header.
fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let source = std::fs::read_to_string(&path).expect("the example");
    source
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_library_snippet_is_the_readme_library_example() {
    assert_eq!(
        readme_block("## Library"),
        example("readme_library"),
        "README.md's Library snippet and examples/readme_library.rs differ: keep them the same"
    );
}
