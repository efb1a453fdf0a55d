//! `include_dir!` embeds `policies/`, but on stable Rust it cannot tell Cargo to rebuild when
//! a file there changes; this does.
fn main() {
    println!("cargo:rerun-if-changed=../../policies");
}
